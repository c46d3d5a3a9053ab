//! HTML for people: the one template environment that lays out the connector server's pages
//! (`templates/server/`) and the run report (`templates/report/`), and the escaping every
//! value from data goes through.
//!
//! The templates are Jinja (minijinja), embedded in the binary. Every `{{ value }}` in a
//! `.html` template is escaped by [`esc`] unless the template marks it `|safe` (markup the
//! code built and escaped itself: the report's SVG charts), so a template cannot forget to
//! escape a connector name or an error message.

mod escape;

use std::sync::OnceLock;

use minijinja::{AutoEscape, Environment, Value, escape_formatter};
use serde::Serialize;

pub use escape::esc;

/// One embedded template: its name under `templates/` and its source.
macro_rules! template {
    ($name:literal) => {
        ($name, include_str!(concat!("../../templates/", $name)))
    };
}

/// The templates, by name. Names ending in `.html` are HTML-escaped; `.css` is not.
const TEMPLATES: &[(&str, &str)] = &[
    template!("server/base.html"),
    template!("server/status.html"),
    template!("server/connector.html"),
    template!("server/login.html"),
    template!("server/message.html"),
    template!("report/page.html"),
    template!("report/style.css"),
    template!("report/macros.html"),
    template!("report/header.html"),
    template!("report/funnel.html"),
    template!("report/licences.html"),
    template!("report/activity.html"),
    template!("report/office.html"),
    template!("report/identity.html"),
    template!("report/warnings.html"),
    template!("report/run.html"),
    template!("report/history.html"),
];

fn environment() -> &'static Result<Environment<'static>, String> {
    static ENV: OnceLock<Result<Environment<'static>, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // A template's last newline is part of its output (the report's sections end
        // their lines the way the page reads in a text editor).
        env.set_keep_trailing_newline(true);
        env.set_formatter(format_value);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .map_err(|e| format!("template templates/{name}: {e:#}"))?;
        }
        Ok(env)
    })
}

/// Writes `{{ value }}`: nothing for none (an absent value is not the word "none"), else
/// HTML-escaped by [`esc`] (the escaping the report's page contract and its tests read back:
/// `&#39;` for `'`, `/` left alone) unless marked safe.
fn format_value(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    if value.is_none() || value.is_undefined() {
        Ok(())
    } else if state.auto_escape() == AutoEscape::Html && !value.is_safe() {
        out.write_str(&esc(&value.to_string()))
            .map_err(minijinja::Error::from)
    } else {
        escape_formatter(out, state, value)
    }
}

/// The page `template` lays out for `context`.
pub fn render(template: &str, context: &impl Serialize) -> Result<String, String> {
    let env = environment().as_ref().map_err(Clone::clone)?;
    env.get_template(template)
        .and_then(|t| t.render(context))
        .map_err(|e| format!("rendering templates/{template}: {e:#}"))
}

/// `source` laid out as an `.html` template of the environment (it may import the others):
/// for tests that check a macro against the code it mirrors.
#[cfg(test)]
pub fn render_str(source: &str, context: &impl Serialize) -> Result<String, String> {
    let mut env = environment().as_ref().map_err(Clone::clone)?.clone();
    env.add_template_owned("test.html", source.to_string())
        .map_err(|e| format!("{e:#}"))?;
    env.get_template("test.html")
        .and_then(|t| t.render(context))
        .map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        assert!(environment().is_ok(), "{:?}", environment().as_ref().err());
    }

    #[test]
    fn values_are_escaped_unless_marked_safe() {
        let html = render_str(
            "{{ a }}|{{ b|safe }}|{{ none }}|{{ missing }}",
            &minijinja::context! { a => "<a href='/x'>&\"</a>", b => "<b>", none => () },
        )
        .unwrap();
        assert_eq!(
            html,
            "&lt;a href=&#39;/x&#39;&gt;&amp;&quot;&lt;/a&gt;|<b>||"
        );
    }
}
