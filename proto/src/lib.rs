//! The payplane API, generated from `proto/payplane/**`. One module per package, e.g.
//! `payplane_proto::accounting::v1::ledger_service_client::LedgerServiceClient`.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod common {
    pub mod v1 {
        tonic::include_proto!("payplane.common.v1");
    }
}
pub mod payment {
    pub mod v1 {
        tonic::include_proto!("payplane.payment.v1");
    }
}
pub mod routing {
    pub mod v1 {
        tonic::include_proto!("payplane.routing.v1");
    }
}
pub mod accounting {
    pub mod v1 {
        tonic::include_proto!("payplane.accounting.v1");
    }
}
pub mod settlement {
    pub mod v1 {
        tonic::include_proto!("payplane.settlement.v1");
    }
}
pub mod channel {
    pub mod v1 {
        tonic::include_proto!("payplane.channel.v1");
    }
}

/// Encoded `FileDescriptorSet` of every payplane proto (and the well-known types they import),
/// for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/payplane_descriptor.bin"));

/// Fully qualified names of the platform's gRPC services, for health and reflection.
pub mod service_names {
    pub const PAYMENT: &str = "payplane.payment.v1.PaymentService";
    pub const ROUTING: &str = "payplane.routing.v1.RoutingService";
    pub const LEDGER: &str = "payplane.accounting.v1.LedgerService";
    pub const SETTLEMENT: &str = "payplane.settlement.v1.SettlementService";
    pub const CHANNEL: &str = "payplane.channel.v1.ChannelService";
    pub const CHANNEL_ADMIN: &str = "payplane.channel.v1.ChannelAdminService";
}
