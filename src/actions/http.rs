//! HTTP actions: method, URL template (values URL-encoded), headers (with `${SECRET}` references),
//! a JSON body template (typed values stay typed), an expected status and a timeout.

use super::{redacted_excerpt, Error, Outcome, Redactor, Runtime, Status};
use crate::catalog::{HttpSpec, Params, Template};
use std::collections::BTreeMap;
use std::time::Instant;

/// The URL with every placeholder replaced by its URL-encoded value; absent optional values
/// become empty.
pub fn url(spec: &HttpSpec, params: &Params) -> String {
    let mut out = spec.url.0.clone();
    for name in spec.url.placeholders() {
        let v = params
            .get(name)
            .map(|v| {
                url::form_urlencoded::byte_serialize(v.as_arg().as_bytes()).collect::<String>()
            })
            .unwrap_or_default();
        out = out.replace(&format!("{{{name}}}"), &v);
    }
    out
}

/// The JSON body: a string that is exactly `{param}` becomes the typed value (a number stays a
/// number); placeholders inside longer strings are substituted as text; object entries whose
/// whole-value parameter is absent are dropped.
pub fn body(template: &serde_json::Value, params: &Params) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    match template {
        J::String(s) => {
            let t = Template(s.clone());
            if let Some(name) = t.whole_placeholder() {
                return params.get(name).map(|v| v.to_json());
            }
            let mut out = s.clone();
            for name in t.placeholders() {
                out = out.replace(
                    &format!("{{{name}}}"),
                    &params.get(name).map(|v| v.as_arg()).unwrap_or_default(),
                );
            }
            Some(J::String(out))
        }
        J::Array(a) => Some(J::Array(a.iter().filter_map(|v| body(v, params)).collect())),
        J::Object(o) => Some(J::Object(
            o.iter()
                .filter_map(|(k, v)| body(v, params).map(|v| (k.clone(), v)))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

fn header_value(t: &Template, params: &Params, secrets: &BTreeMap<String, String>) -> String {
    let mut out = t.0.clone();
    for (name, value) in secrets {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    for name in t.placeholders() {
        out = out.replace(
            &format!("{{{name}}}"),
            &params.get(name).map(|v| v.as_arg()).unwrap_or_default(),
        );
    }
    out
}

pub async fn run(
    spec: &HttpSpec,
    params: &Params,
    rt: &Runtime,
    secrets: &BTreeMap<String, String>,
    redactor: &Redactor,
) -> Result<Outcome, Error> {
    let target = url(spec, params);
    let origin = reqwest::Url::parse(&target)
        .map_err(|e| Error::Template(format!("bad url: {e}")))?
        .origin();
    // a redirect may stay on the configured origin (scheme, host and port), where the headers
    // and their secrets were meant to go; any other is not followed, and the 3xx is the result
    let same_origin = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("too many redirects")
        } else if attempt.url().origin() == origin {
            attempt.follow()
        } else {
            attempt.stop()
        }
    });
    let client = reqwest::Client::builder()
        .timeout(spec.timeout)
        .redirect(same_origin)
        .build()
        .map_err(|e| Error::Http(e.to_string()))?;
    let method = reqwest::Method::from_bytes(spec.method.as_bytes())
        .map_err(|e| Error::Template(e.to_string()))?;
    let mut req = client.request(method, target);
    for (k, t) in &spec.headers {
        req = req.header(k, header_value(t, params, secrets));
    }
    if let Some(b) = &spec.body {
        req = req.json(&body(b, params).unwrap_or(serde_json::Value::Null));
    }
    let started = Instant::now();
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Err(Error::Timeout {
                after: spec.timeout,
            })
        }
        Err(e) => return Err(Error::Http(redactor.redact(&e.to_string()))),
    };
    let code = resp.status().as_u16();
    // read no more than what is kept (plus room to redact a secret straddling the cut): a huge
    // body costs neither memory nor time
    let keep = rt.output_limit + redactor.longest().max(512);
    let mut resp = resp;
    let mut bytes = Vec::new();
    let mut cut = false;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                bytes.extend_from_slice(&chunk[..chunk.len().min(keep - bytes.len())]);
                if bytes.len() >= keep {
                    cut = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return Err(Error::Http(redactor.redact(&e.to_string()))),
        }
    }
    // redacted whole, then cut, so a secret straddling the limit cannot leak in part
    let (text, truncated) = redacted_excerpt(&bytes, cut, redactor, rt.output_limit);
    Ok(Outcome {
        status: if spec.expect_status.contains(&code) {
            Status::Succeeded
        } else {
            Status::Failed
        },
        exit_code: Some(code as i32),
        duration: started.elapsed(),
        output: text,
        truncated,
    })
}
