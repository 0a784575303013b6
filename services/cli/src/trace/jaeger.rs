//! Jaeger's HTTP query API (the one its UI uses, on the query port, 16686 by default): the JSON
//! model of a trace and a small client for the two calls `payplane trace` needs.

use std::{collections::HashMap, time::Duration};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// `GET /api/traces/{id}` and `GET /api/traces?...` both answer `{"data": [trace...], "errors": ...}`.
#[derive(Debug, Deserialize)]
struct ApiResponse {
    data: Option<Vec<Trace>>,
    errors: Option<Vec<ApiError>>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    msg: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Trace {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    pub spans: Vec<Span>,
    /// processID (`p1`, ...) → the process (service) that emitted the span.
    #[serde(default)]
    pub processes: HashMap<String, Process>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Span {
    #[serde(rename = "spanID")]
    pub span_id: String,
    #[serde(rename = "operationName")]
    pub operation_name: String,
    #[serde(default)]
    pub references: Vec<Reference>,
    /// Microseconds since the Unix epoch.
    #[serde(rename = "startTime")]
    pub start_time: u64,
    /// Microseconds.
    pub duration: u64,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(rename = "processID", default)]
    pub process_id: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Reference {
    /// `CHILD_OF` or `FOLLOWS_FROM`.
    #[serde(rename = "refType")]
    pub ref_type: String,
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Process {
    #[serde(rename = "serviceName")]
    pub service_name: String,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// A span or process attribute. The value is a JSON string, number or bool depending on its
/// `type` (`string`, `int64`, `float64`, `bool`, `binary`), so it stays a JSON value here.
#[derive(Clone, Debug, Deserialize)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: serde_json::Value,
}

impl Span {
    pub fn tag(&self, key: &str) -> Option<&serde_json::Value> {
        find_tag(&self.tags, key)
    }

    /// The span this one is a child of, in the same trace. A span can only have one parent in the
    /// waterfall: CHILD_OF first, else the first FOLLOWS_FROM.
    pub fn parent_span_id<'a>(&'a self, trace_id: &str) -> Option<&'a str> {
        let same_trace = |r: &&Reference| r.trace_id.eq_ignore_ascii_case(trace_id);
        self.references
            .iter()
            .filter(same_trace)
            .find(|r| r.ref_type == "CHILD_OF")
            .or_else(|| self.references.iter().find(same_trace))
            .map(|r| r.span_id.as_str())
    }
}

pub fn find_tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a serde_json::Value> {
    tags.iter().find(|t| t.key == key).map(|t| &t.value)
}

/// Jaeger's query API at `base` (`http://127.0.0.1:16686`).
pub struct Jaeger {
    base: String,
    http: reqwest::Client,
}

/// What to tell someone whose Jaeger does not answer.
const UNREACHABLE_HINT: &str = "start it (`ci/devenv up` runs one on 127.0.0.1:16686) or point \
     --jaeger / PAYPLANE_JAEGER_URL at its query port (the local cloud's is http://10.96.0.20:16686; \
     elsewhere `kubectl -n observability port-forward svc/jaeger 16686`)";

impl Jaeger {
    pub fn new(base: &str) -> Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base)
            .with_context(|| format!("--jaeger '{base}' is not a URL like http://127.0.0.1:16686"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("--jaeger '{base}' must be an http:// or https:// URL");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A big trace from a remote Jaeger takes a while; one that hangs should not hang us.
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { base, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The trace in Jaeger's UI.
    pub fn ui_link(&self, trace_id: &str) -> String {
        format!("{}/trace/{trace_id}", self.base)
    }

    /// One trace by id; `None` when Jaeger does not have it.
    pub async fn trace(&self, trace_id: &str) -> Result<Option<Trace>> {
        let url = format!("{}/api/traces/{trace_id}", self.base);
        let Some(traces) = self.get(&url, &[]).await? else {
            return Ok(None);
        };
        Ok(traces
            .into_iter()
            .find(|t| t.trace_id.eq_ignore_ascii_case(trace_id)))
    }

    /// The traces of `service` with a span (or process) tagged `key=value`, started in the last
    /// `window`, at most `limit` of them.
    pub async fn search_by_tag(
        &self,
        service: &str,
        key: &str,
        value: &str,
        window: Duration,
        limit: u32,
    ) -> Result<Vec<Trace>> {
        let url = format!("{}/api/traces", self.base);
        let end = chrono::Utc::now().timestamp_micros();
        let start = end - i64::try_from(window.as_micros()).unwrap_or(i64::MAX / 2);
        let tags = serde_json::json!({ key: value }).to_string();
        let query = [
            ("service", service.to_owned()),
            ("tags", tags),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("limit", limit.to_string()),
        ];
        Ok(self.get(&url, &query).await?.unwrap_or_default())
    }

    /// GET and decode; `Ok(None)` on 404 (Jaeger's "trace not found").
    async fn get(&self, url: &str, query: &[(&str, String)]) -> Result<Option<Vec<Trace>>> {
        let resp = self.http.get(url).query(query).send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                anyhow::anyhow!(
                    "cannot reach Jaeger at {} ({}): {UNREACHABLE_HINT}",
                    self.base,
                    root_cause(&e)
                )
            } else {
                anyhow::anyhow!(
                    "GET {url} failed ({}): is {} Jaeger's query port (16686, not OTLP's 4317/4318)?",
                    root_cause(&e),
                    self.base
                )
            }
        })?;
        let status = resp.status();
        // Jaeger answers an unknown trace with a 404 *and* its JSON; a 404 page of something else
        // at that address is no answer about the trace, so the body decides.
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("reading the answer of GET {url}"))?;
        let parsed: ApiResponse = serde_json::from_slice(&body).with_context(|| {
            format!(
                "malformed answer from {url} (HTTP {status}; is {} Jaeger's query port?): {}",
                self.base,
                snippet(&body)
            )
        })?;
        let errors = parsed.errors.unwrap_or_default();
        if errors.iter().any(|e| e.code == 404) && parsed.data.as_ref().is_none_or(Vec::is_empty) {
            return Ok(None);
        }
        if !status.is_success() || !errors.is_empty() {
            let msgs: Vec<String> = errors.iter().map(|e| format!("{} ({})", e.msg, e.code)).collect();
            bail!(
                "Jaeger answered GET {url} with HTTP {status}: {}",
                msgs.join("; ")
            );
        }
        Ok(Some(parsed.data.unwrap_or_default()))
    }
}

/// The innermost error: reqwest's own message ("error sending request") says little.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The start of a body that is not the expected JSON, to show what answered instead.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None if one_line.is_empty() => "(empty body)".to_owned(),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_trace_as_the_query_api_returns_it() {
        let body = r#"{"data":[{"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spans":[
            {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902b7","flags":1,
             "operationName":"create_payment","references":[{"refType":"CHILD_OF",
             "traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"a2fb4a1d1a96d312"}],
             "startTime":1763802000000000,"duration":1500,"tags":[{"key":"rpc.grpc.status_code",
             "type":"int64","value":14},{"key":"error","type":"bool","value":true}],"logs":[],
             "processID":"p1","warnings":null}],
            "processes":{"p1":{"serviceName":"gateway","tags":[{"key":"service.version","type":"string","value":"0.2.0"}]}},
            "warnings":null}],"total":0,"limit":0,"offset":0,"errors":null}"#;
        let r: ApiResponse = serde_json::from_str(body).unwrap();
        let t = &r.data.unwrap()[0];
        let s = &t.spans[0];
        assert_eq!(s.parent_span_id(&t.trace_id), Some("a2fb4a1d1a96d312"));
        assert_eq!(s.tag("rpc.grpc.status_code"), Some(&serde_json::json!(14)));
        assert_eq!((s.start_time, s.duration), (1_763_802_000_000_000, 1500));
        let p = &t.processes[&s.process_id];
        assert_eq!(p.service_name, "gateway");
        assert_eq!(
            find_tag(&p.tags, "service.version"),
            Some(&serde_json::json!("0.2.0"))
        );
    }

    #[test]
    fn a_reference_to_another_trace_is_no_parent() {
        let s = Span {
            span_id: "b".into(),
            operation_name: "op".into(),
            references: vec![Reference {
                ref_type: "FOLLOWS_FROM".into(),
                trace_id: "other".into(),
                span_id: "x".into(),
            }],
            start_time: 0,
            duration: 0,
            tags: vec![],
            process_id: String::new(),
        };
        assert_eq!(s.parent_span_id("this"), None);
    }

    #[test]
    fn snippet_is_one_short_line() {
        assert_eq!(
            snippet(b"<html>\n  <body>x</body>\n</html>"),
            "<html> <body>x</body> </html>"
        );
        assert_eq!(snippet(b""), "(empty body)");
        assert!(snippet(&[b'a'; 500]).ends_with('…'));
    }
}
