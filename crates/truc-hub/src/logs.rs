//! The hub's log lines, in the two formats `truc` writes: for people, one
//! line per event with every field's control and invisible characters
//! escaped, so that no client's text can end a line, forge the next one or
//! turn a terminal's output around; or JSON, one object per line (JSON
//! strings escape them already). `truc` and the tests that read the hub's
//! log both set logging up here, so the tests read what operators read.

use std::fmt;

use tracing::Subscriber;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::{FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One line per event for people, fields as `name=value`.
    Human,
    /// One JSON object per line for collectors, with the innermost span.
    Json,
}

/// The layer that writes the hub's events in `format` to `writer`; `ansi`
/// colours the level and names for a terminal.
pub fn layer<S, W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    match format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .fmt_fields(EscapedFields::default())
            .with_writer(writer)
            .with_ansi(ansi)
            .boxed(),
        // The innermost span (e.g. `send` with its document_id) rides on each line.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
    }
}

/// The default `name=value` fields, escaped afterwards: a string field is
/// already quoted with escapes, but a message and a value logged with `%`
/// (an error, whose text may repeat a client's) are written as they are.
#[derive(Default)]
pub struct EscapedFields {
    inner: DefaultFields,
}

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut plain = String::new();
        self.inner.format_fields(Writer::new(&mut plain), fields)?;
        write_escaped(&mut writer, &plain)
    }
}

/// Writes `text` with every character that could break or disguise a log
/// line escaped as Rust writes it in a string literal (`\n`, `\0`,
/// `\u{202e}`): controls, line and paragraph separators, bidirectional and
/// other invisible format characters.
pub fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    for character in text.chars() {
        // `escape_debug` leaves printable characters alone; quotes and
        // backslashes are printable here, only escaped inside literals.
        let escaped = character.is_control()
            || (!matches!(character, '"' | '\'' | '\\') && character.escape_debug().len() > 1);
        if escaped {
            write!(out, "{}", character.escape_debug())?;
        } else {
            out.write_char(character)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_could_break_or_disguise_a_line_is_escaped_and_the_rest_kept() {
        let mut out = String::new();
        write_escaped(
            &mut out,
            "Văn bản \"7816/VPCP-TTĐT\"\nforged\r\0\u{1b}[2J\u{202e}fdp.exe\u{2028}\t'\\'",
        )
        .unwrap();
        assert_eq!(
            out,
            "Văn bản \"7816/VPCP-TTĐT\"\\nforged\\r\\0\\u{1b}[2J\\u{202e}fdp.exe\\u{2028}\\t'\\'"
        );
    }
}
