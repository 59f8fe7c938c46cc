//! Events as JSON lines, in the control socket's QMP-like shape:
//! `{"event": "NAME", "data": {...}, "timestamp": {"seconds", "microseconds"}}`.

use std::time::{SystemTime, UNIX_EPOCH};

use livemirror_core::job::JobEvent;
use serde_json::{Value, json};

pub fn event_line(event: &JobEvent) -> String {
    let v = serde_json::to_value(event)
        .unwrap_or_else(|e| json!({ "event": "INVALID", "data": e.to_string() }));
    stamped(v)
}

/// An event that is not a job's (`verify`'s, resume's), in the same shape.
pub fn named_line(event: &str, data: Value) -> String {
    stamped(json!({ "event": event, "data": data }))
}

fn stamped(mut v: Value) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    if let Value::Object(map) = &mut v {
        map.insert(
            "timestamp".into(),
            json!({ "seconds": now.as_secs(), "microseconds": now.subsec_micros() }),
        );
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use livemirror_core::job::JobState;

    #[test]
    fn events_have_name_data_and_timestamp() {
        let line = event_line(&JobEvent::StateChanged { state: JobState::Ready });
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "STATE_CHANGED");
        assert_eq!(v["data"]["state"], "ready");
        assert!(v["timestamp"]["seconds"].as_u64().unwrap() > 1_600_000_000);
        let v: Value = serde_json::from_str(&event_line(&JobEvent::Ready)).unwrap();
        assert_eq!(v["event"], "READY");
    }
}
