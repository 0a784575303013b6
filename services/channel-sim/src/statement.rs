//! ExportStatement's documents, rendered with settlement's own renderers so that the statement
//! the simulator sends is exactly what settlement's reconciliation parses.

use chrono::{DateTime, SecondsFormat, Utc};
use payplane_core::Currency;
use payplane_proto::channel::v1::StatementFormat;
use payplane_settlement::domain::statement::{
    Direction, StatementEntry, StatementHeader, render_camt053, render_csv,
};

use crate::{domain::book::Event, error::Error};

/// The statement of `events` (approved charges and refunds of one channel and currency, in
/// decision order) for `[from, to)`. Exporting a range that is over twice gives the same bytes:
/// the id and creation time derive from the range, not the wall clock.
pub fn render(
    channel_id: &str,
    currency: Currency,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    events: &[Event],
    format: StatementFormat,
) -> Result<(Vec<u8>, u32), Error> {
    let stamp = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let header = StatementHeader {
        statement_id: format!(
            "STMT-{channel_id}-{}-{}-{}",
            currency.code(),
            stamp(&from),
            stamp(&to)
        ),
        channel_id: channel_id.to_owned(),
        currency,
        from,
        to,
        // A statement of a range still open is stamped now; a closed one at its end.
        created_at: to.min(Utc::now()),
    };
    let entries: Vec<StatementEntry> = events
        .iter()
        .map(|e| match e {
            Event::Charge(c) => StatementEntry {
                channel_reference: c.reference.clone(),
                direction: Direction::Credit,
                amount: c.input.amount_minor,
                booked_at: c.decided_at,
            },
            Event::Refund(r) => StatementEntry {
                channel_reference: r.reference.clone(),
                direction: Direction::Debit,
                amount: r.input.amount_minor,
                booked_at: r.decided_at,
            },
        })
        .collect();
    let count = u32::try_from(entries.len()).map_err(|_| Error::Statement("more than 2^32 lines".into()))?;
    let document = match format {
        StatementFormat::Camt053Xml => render_camt053(&header, &entries),
        StatementFormat::Csv => render_csv(&header, &entries),
        StatementFormat::Unspecified => return Err(Error::Statement("no format".into())),
    };
    Ok((document, count))
}
