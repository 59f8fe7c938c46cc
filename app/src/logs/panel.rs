//! The window's log panel as a `tracing` layer: what is logged inside a
//! job's span (its events at [`JOB`], warnings and errors of the app and
//! the engine while working for it) reaches that job's [`Panel`], and,
//! through the other layers, stderr and the log file: one source for all.
//! Spans find their panel through the registry, so two jobs (two windows
//! in one test process) never see each other's lines.

use std::fmt::{Debug, Write};
use std::sync::mpsc;
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Span, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, Registry};

use super::JOB;

/// One event as the panel shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub at: Instant,
    pub level: Level,
    /// The message, then the other fields as `name=value`.
    pub text: String,
}

impl Logged {
    /// A warning or an error: shown as a problem.
    pub fn problem(&self) -> bool {
        self.level <= Level::WARN
    }
}

/// Where a span's events go, kept in the span's extensions.
struct Sink(mpsc::Sender<Logged>);

/// What is logged within one span (and the spans inside it), as it is
/// logged.
pub struct Panel {
    span: Span,
    logged: mpsc::Receiver<Logged>,
}

impl Panel {
    /// Collects what is logged within `span` from now on. Nothing comes
    /// when the process's subscriber has no [`layer`] (a library user, a
    /// test that installs none).
    pub fn new(span: Span) -> Panel {
        let (tx, logged) = mpsc::channel();
        span.with_subscriber(|(id, dispatch)| {
            if let Some(registry) = dispatch.downcast_ref::<Registry>()
                && let Some(data) = registry.span(id)
            {
                data.extensions_mut().insert(Sink(tx));
            }
        });
        Panel { span, logged }
    }

    /// The span whose events this panel shows: enter it to log to it.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// What was logged since the last call (never blocks).
    pub fn drain(&self) -> impl Iterator<Item = Logged> + '_ {
        self.logged.try_iter()
    }
}

/// The layer that feeds panels: the job's lines from info up, everything
/// else from warnings up.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let shown = Targets::new().with_target(JOB, LevelFilter::INFO).with_default(LevelFilter::WARN);
    PanelLayer.with_filter(shown)
}

struct PanelLayer;

impl<S> Layer<S> for PanelLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else { return };
        for span in scope {
            if let Some(Sink(tx)) = span.extensions().get::<Sink>() {
                let mut text = Text::default();
                event.record(&mut text);
                let logged = Logged {
                    at: Instant::now(),
                    level: *event.metadata().level(),
                    text: text.into_string(),
                };
                // Fails only when the panel is gone (its session closed):
                // nothing left to show the line on; the file has it.
                let _ = tx.send(logged);
                return;
            }
        }
    }
}

/// An event's fields in words: the message, then `name=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn into_string(self) -> String {
        self.message + &self.fields
    }
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            // Writing to a String cannot fail.
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn lines(panel: &Panel) -> Vec<(Level, String)> {
        panel.drain().map(|l| (l.level, l.text)).collect()
    }

    /// A panel gets what is logged in its span and the spans inside it:
    /// the job's lines from info up, warnings and errors from anywhere;
    /// not what is logged outside, nor another panel's lines.
    #[test]
    fn the_panel_receives_the_events_logged_in_its_span() {
        let subscriber = tracing_subscriber::registry().with(layer());
        tracing::subscriber::with_default(subscriber, || {
            let panel = Panel::new(tracing::info_span!(target: JOB, "job"));
            let other = Panel::new(tracing::info_span!(target: JOB, "job"));
            panel.span().in_scope(|| {
                tracing::info!(target: JOB, "state: running");
                tracing::debug!(target: JOB, "too detailed for the panel");
                tracing::info!(target: "livemirror::share", "not a job line");
                tracing::warn!(target: "livemirror_core::nbd", peer = "unix", code = 5, "dropped");
                tracing::info_span!("inner").in_scope(|| tracing::error!("within a span within"));
            });
            other.span().in_scope(|| tracing::info!(target: JOB, "the other job"));
            tracing::error!(target: JOB, "outside any job");
            assert_eq!(
                lines(&panel),
                vec![
                    (Level::INFO, "state: running".to_string()),
                    (Level::WARN, "dropped peer=unix code=5".to_string()),
                    (Level::ERROR, "within a span within".to_string()),
                ]
            );
            assert_eq!(lines(&other), vec![(Level::INFO, "the other job".to_string())]);
        });
    }

    #[test]
    fn warnings_and_errors_are_problems() {
        let at = Instant::now();
        let logged = |level| Logged { at, level, text: String::new() };
        assert!(logged(Level::ERROR).problem() && logged(Level::WARN).problem());
        assert!(!logged(Level::INFO).problem());
    }
}
