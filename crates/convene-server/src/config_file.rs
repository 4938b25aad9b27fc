//! The `[server]` table of the deployment file: every command-line flag by
//! its long name (underscores or dashes), so that `convene --config FILE` is
//! a whole deployment. A flag or its CONVENE_* variable overrides the file;
//! the file overrides the built-in defaults. Relative paths in the file are
//! relative to the file's folder, as the TURN secret's is.
//!
//! The values go through the flags' own parsers (clap), so a value is
//! accepted in the file exactly when it would be on the command line, and a
//! refused one is reported at its line and column.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, ValueHint};
use serde::Deserialize;
use toml::Spanned;

use crate::config::Cli;

/// Flags that make no sense in the file that names itself.
const NOT_IN_FILE: &[&str] = &["config", "help", "version"];

/// Something wrong in a configuration or policy file, at a place in it when
/// known (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl Problem {
    /// `FILE:LINE:COL: message` (as compilers write it, so editors jump there).
    pub fn display(&self, file: &Path) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}: {}", file.display(), self.message),
            (Some(l), None) => format!("{}:{l}: {}", file.display(), self.message),
            _ => format!("{}: {}", file.display(), self.message),
        }
    }

    /// From an error message of the TOML parser ("TOML parse error at line 3,
    /// column 1" and a snippet) or of a checker ("line 7: …"), or without a
    /// place.
    pub fn from_message(msg: &str) -> Problem {
        let first = msg.lines().next().unwrap_or_default();
        if let Some(place) = first.strip_prefix("TOML parse error at line ") {
            let mut nums = place
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<usize>().ok());
            let (line, column) = (nums.next().flatten(), nums.next().flatten());
            // After the snippet (lines with a `|` gutter) comes the message.
            let message = msg
                .lines()
                .skip(1)
                .filter(|l| !l.trim_start().starts_with('|') && !l.contains(" | "))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            return Problem {
                line,
                column,
                message,
            };
        }
        if let Some(rest) = first.strip_prefix("line ") {
            if let Some((n, message)) = rest.split_once(": ") {
                if let Ok(n) = n.parse() {
                    return Problem {
                        line: Some(n),
                        column: None,
                        message: message.to_string(),
                    };
                }
            }
        }
        Problem {
            line: None,
            column: None,
            message: msg.trim().to_string(),
        }
    }
}

/// One `key = value` of `[server]`, as the flag and value clap would get.
#[derive(Debug, Clone)]
struct FileOption {
    /// `--listen` etc.
    flag: String,
    id: String,
    value: String,
}

#[derive(Deserialize)]
struct ServerTable {
    #[serde(default)]
    server: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The `[server]` options of a deployment file, each checked alone by the
/// flag's parser; every problem found, not only the first.
fn read_options(text: &str, folder: &Path) -> (Vec<FileOption>, Vec<Problem>) {
    let table: ServerTable = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => return (Vec::new(), vec![Problem::from_message(&e.to_string())]),
    };
    let cmd = Cli::command();
    let mut options = Vec::new();
    let mut problems = Vec::new();
    for (key, value) in table.server {
        let (line, column) = line_col(text, key.span().start);
        let problem = |message: String| Problem {
            line: Some(line),
            column: Some(column),
            message,
        };
        let name = key.get_ref().replace('_', "-");
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(name.as_str()) && !NOT_IN_FILE.contains(&name.as_str()))
        else {
            problems.push(problem(format!(
                "server.{}: no such option (the [server] keys are the flags of `convene --help`, with underscores)",
                key.get_ref()
            )));
            continue;
        };
        let path_like = matches!(
            arg.get_value_hint(),
            ValueHint::AnyPath | ValueHint::FilePath | ValueHint::DirPath
        );
        let scalar = |v: &toml::Value| -> Option<String> {
            match v {
                toml::Value::String(s) => Some(s.clone()),
                toml::Value::Integer(i) => Some(i.to_string()),
                toml::Value::Float(f) => Some(f.to_string()),
                toml::Value::Boolean(b) => Some(b.to_string()),
                _ => None,
            }
        };
        let value = match value.get_ref() {
            toml::Value::Array(items) if arg.get_value_delimiter().is_some() => {
                let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
                parts.map(|p| p.join(","))
            }
            v => scalar(v),
        };
        let Some(mut value) = value else {
            problems.push(problem(format!(
                "server.{}: expected a string or a number{}",
                key.get_ref(),
                if arg.get_value_delimiter().is_some() {
                    ", or a list of them"
                } else {
                    ""
                }
            )));
            continue;
        };
        if path_like && !value.is_empty() && Path::new(&value).is_relative() {
            value = folder.join(&value).display().to_string();
        }
        let flag = format!("--{name}");
        // The flag's own parser, alone (so one bad value does not hide another).
        if let Err(e) = Cli::command().try_get_matches_from(["convene", &format!("{flag}={value}")])
        {
            problems.push(problem(format!(
                "server.{}: {}",
                key.get_ref(),
                clap_message(&e)
            )));
            continue;
        }
        options.push(FileOption {
            flag,
            id: arg.get_id().to_string(),
            value,
        });
    }
    problems.sort_by_key(|p| (p.line, p.column));
    (options, problems)
}

/// clap's error without its "error: " prefix, usage and tips: one line.
fn clap_message(e: &clap::Error) -> String {
    let text = error_text(e);
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// clap's error as it would print it, except that a refused value of a
/// secret option (one whose environment value `--help` hides, such as the
/// admin token) is not repeated: it would land in the service's log.
pub fn error_text(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let text = e.render().to_string();
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return text;
    };
    let Some(ContextValue::String(value)) = e.get(ContextKind::InvalidValue) else {
        return text;
    };
    let secret = Cli::command().get_arguments().any(|a| {
        a.is_hide_env_values_set()
            && a.get_long()
                .is_some_and(|long| arg.starts_with(&format!("--{long}")))
    });
    if secret && !value.is_empty() {
        text.replace(value.as_str(), "(not repeated)")
    } else {
        text
    }
}

/// Parse the command line (and environment), then fill what neither set from
/// the deployment file's `[server]` table. Errors are ready to print: clap's
/// own, or one `FILE:LINE:COL: problem` per line.
pub fn parse_with_file<I, T>(args: I) -> Result<Cli, ParseError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let matches = Cli::command()
        .try_get_matches_from(&args)
        .map_err(ParseError::Clap)?;
    let Some(file) = matches.get_one::<PathBuf>("config_file").cloned() else {
        return Cli::from_arg_matches(&matches).map_err(ParseError::Clap);
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| ParseError::File(format!("{}: {e}", file.display())))?;
    let folder = file.parent().unwrap_or(Path::new("."));
    let (options, problems) = read_options(&text, folder);
    if !problems.is_empty() {
        return Err(ParseError::File(
            problems
                .iter()
                .map(|p| p.display(&file))
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
    let mut all = args.clone();
    // After a subcommand, clap would take them for the subcommand's: the file's
    // options go right after the program name.
    let mut extra = Vec::new();
    for o in &options {
        let set_elsewhere = matches!(
            matches.value_source(&o.id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if !set_elsewhere {
            extra.push(OsString::from(format!("{}={}", o.flag, o.value)));
        }
    }
    all.splice(1..1, extra);
    Cli::try_parse_from(&all).map_err(|e| {
        // Each value passed alone; together they can still clash.
        ParseError::File(format!(
            "{}: the [server] options together: {}",
            file.display(),
            clap_message(&e)
        ))
    })
}

#[derive(Debug)]
pub enum ParseError {
    /// From the command line: clap prints it (and exits 0 for --help).
    Clap(clap::Error),
    /// From the file, one problem a line.
    File(String),
}

/// Everything wrong with a deployment file (its sections and `[server]`) and
/// the policy file it names or `policy` (else the built-in UK levels), without
/// starting anything. Empty when all is well.
pub fn check(file: &Path, policy: Option<&Path>) -> Vec<String> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return vec![format!("{}: {e}", file.display())],
    };
    let mut out = Vec::new();
    let folder = file.parent().unwrap_or(Path::new("."));
    let deployment = match convene_auth::config::DeploymentConfig::parse(&text) {
        Ok(d) => Some(d),
        Err(e) => {
            out.push(Problem::from_message(&e.0).display(file));
            None
        }
    };
    let (options, problems) = read_options(&text, folder);
    out.extend(problems.iter().map(|p| p.display(file)));
    if let Some(t) = deployment.as_ref().and_then(|d| d.turn.as_ref()) {
        if let Err(e) = crate::turn::Issuer::load(t, folder, None) {
            out.push(format!("{}: [turn]: {e}", file.display()));
        }
    }
    // The options together, as the server would take them (the command line
    // and environment of this check are left out: the file alone).
    if problems.is_empty() {
        let mut args = vec!["convene".to_string()];
        args.extend(options.iter().map(|o| format!("{}={}", o.flag, o.value)));
        match crate::config::Cli::try_parse_from(&args) {
            Ok(cli) => {
                let c = cli.config;
                if let Err(e) = c.tls_files() {
                    out.push(format!("{}: [server]: {e}", file.display()));
                }
                if let Err(e) = c.audit_key() {
                    out.push(format!("{}: [server] audit_key_file: {e}", file.display()));
                }
                if policy.is_none() {
                    if let Some(p) = &c.policy_file {
                        out.extend(check_policy(p));
                    }
                }
            }
            Err(e) => out.push(format!(
                "{}: [server]: {}",
                file.display(),
                clap_message(&e)
            )),
        }
    }
    if let Some(p) = policy {
        out.extend(check_policy(p));
    }
    out
}

fn check_policy(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Err(e) => vec![format!("{}: {e}", path.display())],
        Ok(text) => match convene_meeting::policy::Policy::parse(&text) {
            Ok(_) => Vec::new(),
            Err(e) => vec![Problem::from_message(&e.to_string()).display(path)],
        },
    }
}

#[cfg(test)]
mod tests;
