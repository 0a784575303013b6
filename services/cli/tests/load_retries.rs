//! The load engine sends a CreatePayment that failed in the transport again, with the same
//! idempotency key, and counts it as failed only when its retries are used up: here the
//! connections to a (fake, in-memory, idempotent) gateway are cut every 300 ms, some of them
//! after the gateway made the payment and before its answer got back.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use payplane_cli::load::{Live, LoadPlan, Mode, Summary, run};
use payplane_proto::payment::v1::{
    CreatePaymentRequest, CreatePaymentResponse, GetPaymentRequest, GetPaymentResponse, ListPaymentsRequest,
    ListPaymentsResponse, Payment, PaymentStatus, RefundPaymentRequest, RefundPaymentResponse,
    payment_service_server::{PaymentService, PaymentServiceServer},
};
use payplane_runtime::{ClientArgs, balance};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// What the fake gateway saw.
#[derive(Default)]
struct Seen {
    /// Payments by idempotency key, with the request that made each.
    payments: HashMap<String, (CreatePaymentRequest, Payment)>,
    /// CreatePayment calls that reached the handler.
    calls: u64,
    /// Calls answered with an existing payment.
    replayed: u64,
}

/// A gateway idempotent by key, as the real one: the same key and body get the original
/// payment back (`replayed`), another body ALREADY_EXISTS. It records the payment before it
/// takes 10 ms to answer, so a connection cut in between loses an answer, not the payment.
#[derive(Clone, Default)]
struct FakeGateway {
    seen: Arc<Mutex<Seen>>,
}

#[tonic::async_trait]
impl PaymentService for FakeGateway {
    async fn create_payment(
        &self,
        request: Request<CreatePaymentRequest>,
    ) -> Result<Response<CreatePaymentResponse>, Status> {
        let request = request.into_inner();
        let (payment, replayed) = {
            let mut seen = self.seen.lock().expect("lock");
            seen.calls += 1;
            let made = seen.payments.len();
            if let Some((original, payment)) = seen.payments.get(&request.idempotency_key) {
                if *original != request {
                    return Err(Status::already_exists("key used with another body"));
                }
                let payment = payment.clone();
                seen.replayed += 1;
                (payment, true)
            } else {
                let payment = Payment {
                    payment_id: format!("p-{made}"),
                    idempotency_key: request.idempotency_key.clone(),
                    status: PaymentStatus::Succeeded as i32,
                    ..Payment::default()
                };
                seen.payments
                    .insert(request.idempotency_key.clone(), (request, payment.clone()));
                (payment, false)
            }
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(Response::new(CreatePaymentResponse {
            payment: Some(payment),
            replayed,
        }))
    }

    async fn get_payment(
        &self,
        _request: Request<GetPaymentRequest>,
    ) -> Result<Response<GetPaymentResponse>, Status> {
        Err(Status::unimplemented("not used by this test (check_states is 0)"))
    }

    async fn list_payments(
        &self,
        _request: Request<ListPaymentsRequest>,
    ) -> Result<Response<ListPaymentsResponse>, Status> {
        Err(Status::unimplemented("not used by this test"))
    }

    async fn refund_payment(
        &self,
        _request: Request<RefundPaymentRequest>,
    ) -> Result<Response<RefundPaymentResponse>, Status> {
        Err(Status::unimplemented("not used by this test"))
    }
}

/// A TCP forwarder on 127.0.0.1:0 to `to` that closes every connection through it each
/// `every`, as a connection reset by a terminating pod or a broken network path does; new
/// connections are accepted all along.
async fn cutting_proxy(to: SocketAddr, every: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
    let addr = listener.local_addr().expect("addr");
    let cut = Arc::new(Mutex::new(CancellationToken::new()));
    let cutter = cut.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let old = std::mem::take(&mut *cutter.lock().expect("lock"));
            old.cancel();
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            let cut = cut.lock().expect("lock").clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(to).await else {
                    return;
                };
                tokio::select! {
                    () = cut.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                }
            });
        }
    });
    addr
}

const PAYMENTS: u64 = 1500;

/// 1,500 payments from 16 clients through a proxy cutting connections every 300 ms.
async fn load_through_cuts(retries: u32) -> (Summary, Arc<Mutex<Seen>>) {
    let gateway = FakeGateway::default();
    let seen = gateway.seen.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PaymentServiceServer::new(gateway))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let proxy = cutting_proxy(addr, Duration::from_millis(300)).await;
    let resolver = balance::StaticResolver::new([proxy]);
    let channel = balance::channel_with_resolver(resolver, &ClientArgs::default(), None).expect("channel");
    let plan = LoadPlan {
        mode: Mode::Concurrency(16),
        count: Some(PAYMENTS),
        timeout: Duration::from_secs(5),
        check_states: 0,
        retries,
        ..LoadPlan::default()
    };
    let summary = run(
        channel,
        &proxy.to_string(),
        &plan,
        &Live::default(),
        CancellationToken::new(),
    )
    .await;
    eprintln!("retries {retries}:\n{}", summary.render());
    (summary, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn payments_whose_connection_broke_are_sent_again_with_their_key_and_made_once() {
    // Without retries, cut connections fail calls (the gateway may have made the payment).
    let (without, _) = load_through_cuts(0).await;
    assert_eq!(without.completed, PAYMENTS);
    let failed: u64 = without.errors.values().sum();
    assert!(
        failed > 0,
        "the cuts failed no call, so this test shows nothing: {}",
        without.render()
    );
    assert!(without.retries.is_empty(), "{:?}", without.retries);

    let (with, seen) = load_through_cuts(3).await;
    assert_eq!(with.completed, PAYMENTS);
    assert_eq!(
        (with.ok, &with.errors),
        (PAYMENTS, &Default::default()),
        "{}",
        with.render()
    );
    let retries: u64 = with.retries.values().sum();
    assert!(retries > 0, "no call was retried: {}", with.render());
    assert!(with.answered_after_retry > 0 && with.answered_after_retry <= retries);

    let seen = seen.lock().expect("lock");
    // One payment per call: the retries reached the gateway with the same key and body.
    assert_eq!(seen.payments.len() as u64, PAYMENTS);
    assert!(seen.calls > PAYMENTS, "{} calls reached the gateway", seen.calls);
    // Some answers were lost after the payment was made: their retries got it back.
    assert!(seen.replayed > 0, "no retry found its payment made");
    assert_eq!(
        with.replayed, seen.replayed,
        "the summary counts the gateway's replays"
    );
}
