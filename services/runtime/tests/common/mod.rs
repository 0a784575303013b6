//! Test support: a small gRPC service written against tonic's server API (unary and
//! server-streaming, with chosen delay and status), its descriptor, and server start-up.
#![allow(dead_code)]

pub mod process;

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use payplane_runtime::{GrpcServer, Listeners, ServerArgs, Shutdown};
use prost::Message;
use tonic::{Request, Response, Status, body::Body, server::NamedService};

pub const ECHO_SERVICE: &str = "payplane.test.v1.EchoService";

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    #[prost(string, tag = "1")]
    pub message: String,
    /// The handler sleeps this long first.
    #[prost(uint64, tag = "2")]
    pub sleep_ms: u64,
    /// The handler fails with this gRPC code unless it is 0.
    #[prost(int32, tag = "3")]
    pub code: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoResponse {
    #[prost(string, tag = "1")]
    pub message: String,
    /// Name of the server that answered.
    #[prost(string, tag = "2")]
    pub server: String,
}

/// The service; `name` comes back in every response.
#[derive(Clone)]
pub struct EchoService {
    pub name: String,
}

impl NamedService for EchoService {
    const NAME: &'static str = ECHO_SERVICE;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl tower::Service<http::Request<Body>> for EchoService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let name = self.name.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            let response = match request.uri().path() {
                "/payplane.test.v1.EchoService/Echo" => grpc.unary(Unary(name), request).await,
                "/payplane.test.v1.EchoService/EchoStream" => {
                    grpc.server_streaming(Streaming(name), request).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(response)
        })
    }
}

async fn handle(name: &str, request: &EchoRequest) -> Result<EchoResponse, Status> {
    tokio::time::sleep(Duration::from_millis(request.sleep_ms)).await;
    if request.code != 0 {
        return Err(Status::new(tonic::Code::from_i32(request.code), "asked to fail"));
    }
    Ok(EchoResponse {
        message: request.message.clone(),
        server: name.to_owned(),
    })
}

struct Unary(String);

impl tonic::server::UnaryService<EchoRequest> for Unary {
    type Response = EchoResponse;
    type Future = BoxFuture<Result<Response<EchoResponse>, Status>>;

    fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
        let name = self.0.clone();
        Box::pin(async move { handle(&name, request.get_ref()).await.map(Response::new) })
    }
}

struct Streaming(String);

type EchoStream = Pin<Box<dyn futures::Stream<Item = Result<EchoResponse, Status>> + Send + 'static>>;

impl tonic::server::ServerStreamingService<EchoRequest> for Streaming {
    type Response = EchoResponse;
    type ResponseStream = EchoStream;
    type Future = BoxFuture<Result<Response<EchoStream>, Status>>;

    /// Three messages, then the requested status in the trailers.
    fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
        let name = self.0.clone();
        let request = request.into_inner();
        Box::pin(async move {
            let ok = EchoResponse {
                message: request.message.clone(),
                server: name.clone(),
            };
            let mut items: Vec<Result<EchoResponse, Status>> = vec![Ok(ok.clone()), Ok(ok.clone()), Ok(ok)];
            if request.code != 0 {
                items.push(Err(Status::new(
                    tonic::Code::from_i32(request.code),
                    "stream failed",
                )));
            }
            let stream: EchoStream = Box::pin(futures::stream::iter(items));
            Ok(Response::new(stream))
        })
    }
}

/// Calls Echo over any channel, as a generated client would.
pub async fn echo<T>(channel: T, request: EchoRequest) -> Result<EchoResponse, Status>
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|e| Status::unknown(format!("not ready: {}", e.into())))?;
    let path = http::uri::PathAndQuery::from_static("/payplane.test.v1.EchoService/Echo");
    client
        .unary(Request::new(request), path, tonic_prost::ProstCodec::default())
        .await
        .map(Response::into_inner)
}

/// Calls EchoStream and collects the messages and the final status.
pub async fn echo_stream<T>(channel: T, request: EchoRequest) -> (usize, Result<(), Status>)
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut client = tonic::client::Grpc::new(channel);
    if let Err(e) = client.ready().await {
        return (0, Err(Status::unknown(format!("not ready: {}", e.into()))));
    }
    let path = http::uri::PathAndQuery::from_static("/payplane.test.v1.EchoService/EchoStream");
    let codec = tonic_prost::ProstCodec::<EchoRequest, EchoResponse>::default();
    let mut stream = match client.server_streaming(Request::new(request), path, codec).await {
        Ok(r) => r.into_inner(),
        Err(s) => return (0, Err(s)),
    };
    let mut n = 0;
    loop {
        match stream.message().await {
            Ok(Some(_)) => n += 1,
            Ok(None) => return (n, Ok(())),
            Err(s) => return (n, Err(s)),
        }
    }
}

/// The encoded FileDescriptorSet of the echo service, for reflection.
pub fn echo_descriptor_set() -> &'static [u8] {
    use prost_types::{
        DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto,
        ServiceDescriptorProto,
        field_descriptor_proto::{Label, Type},
    };
    let field = |name: &str, number: i32, ty: Type| FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        label: Some(Label::Optional as i32),
        r#type: Some(ty as i32),
        json_name: Some(name.into()),
        ..Default::default()
    };
    let method = |name: &str, streaming: bool| MethodDescriptorProto {
        name: Some(name.into()),
        input_type: Some(".payplane.test.v1.EchoRequest".into()),
        output_type: Some(".payplane.test.v1.EchoResponse".into()),
        server_streaming: Some(streaming),
        ..Default::default()
    };
    let file = FileDescriptorProto {
        name: Some("payplane/test/v1/echo.proto".into()),
        package: Some("payplane.test.v1".into()),
        syntax: Some("proto3".into()),
        message_type: vec![
            DescriptorProto {
                name: Some("EchoRequest".into()),
                field: vec![
                    field("message", 1, Type::String),
                    field("sleep_ms", 2, Type::Uint64),
                    field("code", 3, Type::Int32),
                ],
                ..Default::default()
            },
            DescriptorProto {
                name: Some("EchoResponse".into()),
                field: vec![
                    field("message", 1, Type::String),
                    field("server", 2, Type::String),
                ],
                ..Default::default()
            },
        ],
        service: vec![ServiceDescriptorProto {
            name: Some("EchoService".into()),
            method: vec![method("Echo", false), method("EchoStream", true)],
            ..Default::default()
        }],
        ..Default::default()
    };
    Box::leak(
        FileDescriptorSet { file: vec![file] }
            .encode_to_vec()
            .into_boxed_slice(),
    )
}

/// A running test server.
pub struct TestServer {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub shutdown: Shutdown,
    /// Sets what its `grpc.health.v1` reports (shutdown sets NOT_SERVING too).
    pub health: tonic_health::server::HealthReporter,
    pub task: tokio::task::JoinHandle<payplane_runtime::Result<()>>,
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// A plain (unbalanced) tonic channel to this server.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.url())
            .expect("valid url")
            .connect()
            .await
            .expect("connects")
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://{}{path}", self.admin))
            .await
            .expect("admin answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    pub async fn stop(self) -> payplane_runtime::Result<()> {
        self.shutdown.trigger();
        self.task.await.expect("server task")
    }
}

/// Starts a server named `name` with the echo service on `ip`:0 (admin on 127.0.0.1:0).
pub async fn start(name: &str, ip: [u8; 4], tweak: impl FnOnce(&mut ServerArgs)) -> TestServer {
    let mut args = ServerArgs::local("9.9.9-test");
    args.grpc_addr = SocketAddr::from((ip, 0));
    tweak(&mut args);
    let server = GrpcServer::new(name, &args)
        .file_descriptor_set(echo_descriptor_set())
        .add_service(EchoService {
            name: name.to_owned(),
        });
    let listeners: Listeners = server.bind().await.expect("binds");
    let (grpc, admin) = (
        listeners.grpc_addr().expect("addr"),
        listeners.admin_addr().expect("addr"),
    );
    let shutdown = server.shutdown_handle();
    let health = server.health_reporter();
    let task = tokio::spawn(server.serve_with(listeners));
    TestServer {
        grpc,
        admin,
        shutdown,
        health,
        task,
    }
}

/// The value of the sample `name{labels...}` in an OpenMetrics text, matching every given
/// `label="value"` pair; 0 when absent.
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}
