//! Listing services through reflection, v1 and v1alpha, as grpcurl does.

mod common;

use common::ECHO_SERVICE;
use tokio_stream::StreamExt;
use tonic_reflection::pb::{v1, v1alpha};

const EXPECTED: [&str; 4] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    ECHO_SERVICE,
];

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_the_services_and_serves_their_descriptors() {
    let server = common::start("reflection-test", [127, 0, 0, 1], |_| {}).await;

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    use v1::{server_reflection_request::MessageRequest, server_reflection_response::MessageResponse};
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol(ECHO_SERVICE.into()),
    ]
    .map(|r| v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(r),
    });
    let mut replies = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection call")
        .into_inner();

    let listed = match replies
        .next()
        .await
        .expect("a reply")
        .expect("ok")
        .message_response
    {
        Some(MessageResponse::ListServicesResponse(list)) => list.service,
        other => panic!("unexpected reply {other:?}"),
    };
    let mut names: Vec<String> = listed.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, EXPECTED);

    match replies
        .next()
        .await
        .expect("a reply")
        .expect("ok")
        .message_response
    {
        Some(MessageResponse::FileDescriptorResponse(files)) => {
            let all: Vec<u8> = files.file_descriptor_proto.concat();
            assert!(String::from_utf8_lossy(&all).contains("EchoService"));
        }
        other => panic!("unexpected reply {other:?}"),
    }

    // grpcurl and older tools still speak v1alpha.
    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut replies = alpha
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("v1alpha call")
        .into_inner();
    let listed = match replies
        .next()
        .await
        .expect("a reply")
        .expect("ok")
        .message_response
    {
        Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
            list.service
        }
        other => panic!("unexpected reply {other:?}"),
    };
    let mut names: Vec<String> = listed.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, EXPECTED);

    server.stop().await.expect("clean shutdown");
}
