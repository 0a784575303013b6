//! Release records and delivery figures.
//!
//! - [`event`]: the `ReleaseEvent` custom resource, the append-only audit trail the rollout
//!   controller writes (one object per transition), and the constructors it uses.
//! - [`record`]: the fold of one release's events into a [`record::ReleaseRecord`].
//! - [`figures`]: deployment frequency, lead time, change failure rate and time to restore over
//!   a window, with their precise definitions.
//! - [`metrics`]: the figures as Prometheus gauges.
//!
//! Everything here is pure (no I/O) except [`event::record`], the one create call the
//! controller makes per transition; the CLI (`payplane report`) reads the resources.

pub mod event;
pub mod figures;
pub mod metrics;
pub mod record;

pub use event::{EventKind, ReleaseContext, ReleaseEvent, ReleaseEventSpec};
pub use figures::DeliveryFigures;
pub use record::{Outcome, ReleaseRecord, fold};
