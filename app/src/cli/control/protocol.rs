//! Requests and replies: `{"execute": VERB, "arguments": {...}}` →
//! `{"return": {...}}` or `{"error": {"class": ..., "desc": ...}}`.

use livemirror_core::Error;
use livemirror_core::job::{Command, CopyMode, Decision, JobHandle};
use serde_json::{Value, json};

/// Answers one request line.
pub async fn handle(line: &str, job: &JobHandle) -> Value {
    match parse(line) {
        Ok(Request::Query) => json!({ "return": query(job) }),
        Ok(Request::Run(cmd)) => match job.send(cmd).await {
            Ok(()) => json!({ "return": {} }),
            Err(e) => error(class(&e), &e.to_string()),
        },
        Err(desc) => error("GenericError", &desc),
    }
}

enum Request {
    Query,
    Run(Command),
}

fn parse(line: &str) -> Result<Request, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let verb = v["execute"].as_str().ok_or("missing \"execute\"")?;
    let args = &v["arguments"];
    let cmd = match verb {
        "query" => return Ok(Request::Query),
        "set-speed" => {
            let speed = &args["speed"];
            if speed.as_i64().is_some_and(|s| s < 0) {
                return Err("speed must not be negative".into());
            }
            Command::SetSpeed(speed.as_u64().ok_or("set-speed needs \"speed\" (bytes per second)")?)
        }
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        "complete" => Command::Complete,
        "cancel" => Command::Cancel { force: args["force"].as_bool().unwrap_or(false) },
        "set-copy-mode" => {
            let mode = args["copy-mode"].as_str().ok_or("set-copy-mode needs \"copy-mode\"")?;
            Command::SetCopyMode(mode.parse::<CopyMode>()?)
        }
        "decide" => Command::Decide(match args["action"].as_str() {
            Some("retry") => Decision::Retry,
            Some("ignore") => Decision::Ignore,
            Some("stop") => Decision::Stop,
            _ => return Err("decide needs \"action\": retry, ignore or stop".into()),
        }),
        other => return Err(format!("unknown command {other:?}")),
    };
    Ok(Request::Run(cmd))
}

fn query(job: &JobHandle) -> Value {
    let s = job.status();
    json!({
        "state": s.state,
        "offset": s.progress.copied,
        "len": s.progress.total,
        "dirty": s.progress.dirty,
        "in-flight": s.progress.in_flight,
        "speed": s.speed,
        "copy-mode": s.copy_mode,
        "tracking": s.tracking,
        "verify": s.verify,
        "io-status": s.io_status,
        "ready": s.ready,
        "pending-error": s.pending_error,
    })
}

fn class(e: &Error) -> &'static str {
    match e {
        Error::WrongState { .. } => "WrongState",
        Error::JobEnded => "JobEnded",
        _ => "GenericError",
    }
}

fn error(class: &str, desc: &str) -> Value {
    json!({ "error": { "class": class, "desc": desc } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use livemirror_core::device::MemoryDevice;
    use livemirror_core::job::{self, MirrorOptions};
    use livemirror_core::live::LiveSource;

    fn job(speed: u64) -> JobHandle {
        let live = LiveSource::new(Arc::new(MemoryDevice::from_bytes(vec![1; 4 << 20])));
        let opts = MirrorOptions { speed, ..Default::default() };
        job::start(live, Arc::new(MemoryDevice::new(4 << 20)), opts).unwrap().0
    }

    async fn ask(job: &JobHandle, req: &str) -> Value {
        handle(req, job).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_verb_and_wrong_state_errors() {
        let j = job(1 << 20);
        // The job is "created" until its task has run once.
        j.watch().wait_for(|s| s.state == livemirror_core::job::JobState::Running).await.unwrap();
        let q = ask(&j, r#"{"execute":"query"}"#).await;
        assert_eq!(q["return"]["state"], "running");
        assert_eq!(q["return"]["copy-mode"], "background");
        assert_eq!(q["return"]["tracking"], "nbd");
        assert_eq!(q["return"]["io-status"], "ok");
        let e = ask(&j, r#"{"execute":"complete"}"#).await;
        assert_eq!(e["error"]["class"], "WrongState");
        assert_eq!(e["error"]["desc"], "cannot complete while the job is running");
        let e = ask(&j, r#"{"execute":"decide","arguments":{"action":"retry"}}"#).await;
        assert_eq!(e["error"]["desc"], "cannot decide while the job is running");
        assert_eq!(ask(&j, r#"{"execute":"pause"}"#).await["return"], json!({}));
        assert_eq!(ask(&j, r#"{"execute":"query"}"#).await["return"]["state"], "paused");
        assert_eq!(ask(&j, r#"{"execute":"resume"}"#).await["return"], json!({}));
        let r =
            ask(&j, r#"{"execute":"set-copy-mode","arguments":{"copy-mode":"write-blocking"}}"#);
        assert_eq!(r.await["return"], json!({}));
        let r = ask(&j, r#"{"execute":"set-speed","arguments":{"speed":0}}"#).await;
        assert_eq!(r["return"], json!({}));
        let mut w = j.watch();
        w.wait_for(|s| s.ready).await.unwrap();
        let q = ask(&j, r#"{"execute":"query"}"#).await;
        assert_eq!(
            (q["return"]["ready"].clone(), q["return"]["dirty"].clone()),
            (json!(true), json!(0))
        );
        assert_eq!(ask(&j, r#"{"execute":"complete"}"#).await["return"], json!({}));
        j.wait().await;
        let e = ask(&j, r#"{"execute":"pause"}"#).await;
        assert_eq!(e["error"]["class"], "JobEnded");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_requests_get_generic_errors() {
        let j = job(1 << 20);
        for (req, desc) in [
            ("nonsense", "not JSON"),
            (r#"{"arguments":{}}"#, "missing \"execute\""),
            (r#"{"execute":"explode"}"#, "unknown command"),
            (r#"{"execute":"set-speed","arguments":{"speed":-1}}"#, "must not be negative"),
            (r#"{"execute":"set-copy-mode","arguments":{"copy-mode":"fast"}}"#, "is not one of"),
            (r#"{"execute":"decide","arguments":{"action":"maybe"}}"#, "retry, ignore or stop"),
        ] {
            let e = ask(&j, req).await;
            assert_eq!(e["error"]["class"], "GenericError", "{req}");
            assert!(e["error"]["desc"].as_str().unwrap().contains(desc), "{req}: {e}");
        }
        let r = ask(&j, r#"{"execute":"cancel","arguments":{"force":true}}"#).await;
        assert_eq!(r["return"], json!({}));
    }
}
