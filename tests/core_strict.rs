//! Strict command parsing, table-driven, against the default pack.

use opsbot::catalog::{load_dir, Value};
use opsbot::nlu::strict::{parse, Strict};

/// An expected parse: the intent and its values, or the error text.
type Expected<'a> = Result<(&'a str, &'a [(&'a str, Value)]), &'a str>;

fn check(input: &str, expected: Expected) {
    let catalog = load_dir(&crate::common::repo().join("intents")).unwrap();
    let got = parse(&catalog, input, "!");
    match (got, expected) {
        (Ok(Strict::Command { intent, params }), Ok((name, want))) => {
            assert_eq!(intent.id.0, name, "{input}");
            let want: std::collections::BTreeMap<String, Value> = want
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            assert_eq!(params, want, "{input}");
        }
        (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{input}: {e}"),
        (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
    }
}

fn ent(s: &str) -> Value {
    Value::Entity(s.into())
}

#[test]
fn strict_table() {
    use Value::*;
    check(
        "deploy api staging 2.4.1",
        Ok((
            "deploy",
            &[
                ("service", ent("api")),
                ("env", ent("staging")),
                ("version", Version("2.4.1".into())),
            ],
        )),
    );
    check(
        "deploy service=api env=staging",
        Ok((
            "deploy",
            &[("service", ent("api")), ("env", ent("staging"))],
        )),
    );
    check(
        "DEPLOY Frontend PROD v3.0.0-rc.1",
        Ok((
            "deploy",
            &[
                ("service", ent("web")),
                ("env", ent("production")),
                ("version", Version("3.0.0-rc.1".into())),
            ],
        )),
    );
    check(
        "deploy env=stg api",
        Ok((
            "deploy",
            &[("service", ent("api")), ("env", ent("staging"))],
        )),
    );
    check("status staging", Ok(("status", &[("env", ent("staging"))])));
    check("status", Ok(("status", &[])));
    check(
        "alerts ack #4821",
        Ok(("alerts.ack", &[("alert", Alert("4821".into()))])),
    );
    check(
        "alerts.ack 4821",
        Ok(("alerts.ack", &[("alert", Alert("4821".into()))])),
    );
    check(
        "alerts silence cache \"half an hour\"",
        Ok((
            "alerts.silence",
            &[("service", ent("redis")), ("duration", Duration(1800))],
        )),
    );
    check(
        "logs api",
        Ok((
            "logs",
            &[
                ("service", ent("api")),
                ("env", ent("production")),
                ("since", Duration(900)),
            ],
        )),
    );
    check(
        "runbook postgres failover steps",
        Ok((
            "runbook",
            &[
                ("service", ent("postgres")),
                ("topic", Text("failover steps".into())),
            ],
        )),
    );
    check(
        "runbook disk full",
        Ok(("runbook", &[("topic", Text("disk full".into()))])),
    );
    check(
        "incident open p1 payments checkout is down",
        Ok((
            "incident.open",
            &[
                ("severity", ent("sev1")),
                ("service", ent("payments")),
                ("title", Text("checkout is down".into())),
            ],
        )),
    );
    check(
        "incident open checkout is down",
        Ok((
            "incident.open",
            &[
                ("severity", ent("sev3")),
                ("title", Text("checkout is down".into())),
            ],
        )),
    );
    check(
        "scale worker dev 0",
        Ok((
            "scale",
            &[
                ("service", ent("worker")),
                ("env", ent("dev")),
                ("replicas", Integer(0)),
            ],
        )),
    );
    check(
        "deploy api staging a1b2c3d",
        Ok((
            "deploy",
            &[
                ("service", ent("api")),
                ("env", ent("staging")),
                ("version", Version("a1b2c3d".into())),
            ],
        )),
    );
    check("deploy api staging api", Err("version must be a version"));
    check("deploy api api staging", Err("unknown env 'api'"));
    check(
        "deploy api staging version=1.0.0 version=2.0.0",
        Err("version is given twice"),
    );
    check(
        "deploy api staging colour=blue",
        Err("deploy has no parameter 'colour'"),
    );
    check(
        "scale web prod -3",
        Err("replicas must be between 0 and 100, got -3"),
    );
    check(
        "scale web prod lots",
        Err("replicas must be a whole number, got 'lots'"),
    );
    check(
        "alerts silence api forever",
        Err("duration must be a duration"),
    );
    check("", Err("empty command"));
    check(
        "restrat api dev",
        Err("unknown command 'restrat'; did you mean !restart <service> <env>?"),
    );
}
