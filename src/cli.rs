//! Command lines that explain themselves. Each service lists its settings in
//! a table beside its `config.rs` ([`Setting`]s under a [`Group`] heading;
//! the shared ones are here: [`KAFKA`], [`JWT`], [`REDIRECT_HOSTS`], ...).
//! [`parse`] turns the table into a clap command with one `--kebab-case`
//! flag per variable (`--help` shows its variable and default, `--version`
//! works, typos get a suggestion) and returns an [`EnvReader`] over the
//! environment with the flags actually given laid over it.
//!
//! The environment stays the way to configure a service (compose,
//! Kubernetes); a flag is the same setting spelled on the command line and
//! wins over its variable. Defaults live only in the config code: the
//! table shows them, [`table_problems`] proves it shows them right.
//!
//! The logging and tracing settings ([`TELEMETRY`]) are read from the
//! process environment by those libraries themselves, so `--help` lists
//! them but they take no flag.

use std::collections::{BTreeSet, HashMap};
use std::fmt::{Debug, Display, Write as _};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::env::{EnvReader, ReadLog};

/// Exit code of bad usage or configuration (`EX_USAGE`), as for a bad variable.
pub const EXIT_USAGE: u8 = 64;

/// One variable a binary reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The environment variable; the flag is its kebab-case
    /// (`KAFKA_BOOTSTRAP_SERVERS` is `--kafka-bootstrap-servers`).
    pub env: &'static str,
    /// The value the config uses when it is unset, exactly as one would set
    /// it; empty when there is none (the help says what happens then).
    pub default: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
}

impl Setting {
    /// The flag's long name: `KAFKA_BOOTSTRAP_SERVERS` → `kafka-bootstrap-servers`.
    pub fn flag(&self) -> String {
        self.env.to_ascii_lowercase().replace('_', "-")
    }

    fn help_line(&self) -> String {
        if self.default.is_empty() {
            self.help.to_owned()
        } else {
            format!("{} [default: {}]", self.help, self.default)
        }
    }
}

/// Settings shown together in `--help` under `heading`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub heading: &'static str,
    pub settings: &'static [Setting],
}

pub const KAFKA_BOOTSTRAP_SERVERS: Setting = Setting {
    env: "KAFKA_BOOTSTRAP_SERVERS",
    default: "localhost:9092",
    help: "Kafka brokers to bootstrap from (host:port, comma-separated)",
};

/// `KAFKA_*`, read by [`crate::kafka::KafkaConfig::from_env`].
pub const KAFKA: Group = Group {
    heading: "Kafka",
    settings: &[
        KAFKA_BOOTSTRAP_SERVERS,
        Setting {
            env: "KAFKA_REPLICATION_FACTOR",
            default: "1",
            help: "replication factor of the topics this service creates",
        },
        Setting {
            env: "KAFKA_ENABLE_IDEMPOTENCE",
            default: "true",
            help: "idempotent producers (false only for a broker that cannot take producer epoch bumps, like Tansu 0.6.0)",
        },
    ],
};

/// Read by [`crate::topics::Topics::from_env`].
pub const TOPIC_PARTITIONS: Setting = Setting {
    env: "CHECKOUT_TOPIC_PARTITIONS",
    default: "3",
    help: "partitions of each checkout topic created here (1 to 1000); replicas beyond this count sit idle",
};

/// Read by [`crate::kafka::GroupInstanceId::from_env`].
pub const HOSTNAME: Setting = Setting {
    env: "HOSTNAME",
    default: "",
    help: "what {hostname} stands for in a group instance id (Docker and Kubernetes set it to the container's or pod's name)",
};

/// Read by [`crate::HostAllowlist::from_env`].
pub const REDIRECT_HOSTS: Setting = Setting {
    env: crate::domain::REDIRECT_HOSTS_VAR,
    default: "localhost,127.0.0.1,[::1],example.com,*.example.com,*.example",
    help: "hosts success_url and cancel_url may point at, comma-separated, exact or *.domain",
};

pub const JWT_SECRET: Setting = Setting {
    env: "JWT_SECRET",
    default: "",
    help: "HS256 secret of bearer tokens, at least 16 characters; required unless JWT_JWKS_URL is set",
};

/// `JWT_*`: bearer tokens ([`crate::auth`]).
pub const JWT: Group = Group {
    heading: "Authentication",
    settings: &[
        JWT_SECRET,
        Setting {
            env: "JWT_JWKS_URL",
            default: "",
            help: "an identity provider's JWKS: its RS256/ES256 tokens are accepted too (unset: none)",
        },
        Setting {
            env: "JWT_ISSUER",
            default: "",
            help: "the `iss` the identity provider's tokens carry (required with JWT_JWKS_URL)",
        },
        Setting {
            env: "JWT_AUDIENCE",
            default: "",
            help: "the `aud` the identity provider issues for this API (required with JWT_JWKS_URL)",
        },
    ],
};

/// Read from the process environment by the logging and tracing libraries
/// ([`crate::telemetry`]): listed in every binary's `--help`, no flags.
pub const TELEMETRY: Group = Group {
    heading: "Logs and traces (environment only)",
    settings: &[
        Setting {
            env: "RUST_LOG",
            default: "info",
            help: "log filter, e.g. info,gateway=debug",
        },
        Setting {
            env: "LOG_FORMAT",
            default: "text",
            help: "text (human-readable) or json (one object per line, for log shippers)",
        },
        Setting {
            env: "OTEL_EXPORTER_OTLP_ENDPOINT",
            default: "",
            help: "OpenTelemetry: the OTLP endpoint spans are exported to (unset: no export)",
        },
        Setting {
            env: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            default: "",
            help: "OpenTelemetry: the OTLP endpoint for spans only, beside OTEL_EXPORTER_OTLP_ENDPOINT (unset: no export)",
        },
        Setting {
            env: "OTEL_SDK_DISABLED",
            default: "false",
            help: "OpenTelemetry: true exports nothing even with an endpoint set",
        },
        Setting {
            env: "OTEL_SERVICE_NAME",
            default: "",
            help: "OpenTelemetry: the service name on exported spans (unset: no export without an endpoint)",
        },
        Setting {
            env: "OTEL_TRACES_SAMPLER",
            default: "",
            help: "OpenTelemetry: which spans are sampled, e.g. parentbased_always_on (unset: no export without an endpoint)",
        },
        Setting {
            env: "OTEL_RESOURCE_ATTRIBUTES",
            default: "",
            help: "OpenTelemetry: key=value,... on every exported span (unset: no export without an endpoint)",
        },
    ],
};

/// Adds one flag per setting of `groups` to `command`, each under its
/// group's heading, showing its variable and default. Nothing is injected
/// as a value: a flag not given leaves the variable (and the config's
/// default) in charge.
pub fn with_settings(mut command: Command, groups: &[Group]) -> Command {
    for group in groups {
        for setting in group.settings {
            command = command.arg(
                Arg::new(setting.env)
                    .long(setting.flag())
                    .value_name("VALUE")
                    .action(ArgAction::Set)
                    .env(setting.env)
                    // The variable's value may be a secret: the help shows its name only.
                    .hide_env_values(true)
                    .help(setting.help_line())
                    .help_heading(group.heading),
            );
        }
    }
    command
}

/// The command of a service binary: `name`, `about`, `version` (its
/// `CARGO_PKG_VERSION`), the flags of `groups`, and [`TELEMETRY`] after them.
pub fn command(
    name: &'static str,
    about: &'static str,
    version: &'static str,
    groups: &[Group],
) -> Command {
    let command = Command::new(name)
        .about(about)
        .version(version)
        .after_help(after_help());
    with_settings(command, groups)
}

/// The text after every service's flags: the environment rule and [`TELEMETRY`].
pub fn after_help() -> String {
    let width = TELEMETRY
        .settings
        .iter()
        .map(|s| s.env.len())
        .max()
        .unwrap_or(0);
    let mut text = String::from(
        "Every setting is an environment variable; its flag, when given, wins over it.\n\n",
    );
    let _ = writeln!(text, "{}:", TELEMETRY.heading);
    for s in TELEMETRY.settings {
        let _ = writeln!(text, "  {:width$}  {}", s.env, s.help_line());
    }
    text.trim_end().to_owned()
}

/// A reader over `vars` with the settings of `groups` given in `matches` on
/// the command line laid over them (a variable set only in the environment
/// stays as it is; clap's own reading of the environment is for `--help`).
pub fn overlay(
    matches: &ArgMatches,
    groups: &[Group],
    vars: impl IntoIterator<Item = (String, String)>,
) -> EnvReader {
    let mut vars: HashMap<String, String> = vars.into_iter().collect();
    for setting in groups.iter().flat_map(|g| g.settings) {
        if matches.value_source(setting.env) == Some(ValueSource::CommandLine)
            && let Some(value) = matches.get_one::<String>(setting.env)
        {
            vars.insert(setting.env.to_owned(), value.clone());
        }
    }
    EnvReader::from_map(vars)
}

/// Parses the process's command line against [`command`] and returns the
/// environment with the flags given laid over it. `--help` and `--version`
/// print and exit 0; bad usage prints clap's message (with a suggestion for
/// a typo) and exits [`EXIT_USAGE`].
pub fn parse(
    name: &'static str,
    about: &'static str,
    version: &'static str,
    groups: &[Group],
) -> EnvReader {
    let matches = command(name, about, version, groups)
        .try_get_matches()
        .unwrap_or_else(|e| exit(&e));
    overlay(&matches, groups, std::env::vars())
}

/// Ends the process for a clap outcome: `--help`/`--version` print to
/// stdout and exit 0, an error prints to stderr and exits [`EXIT_USAGE`].
pub fn exit(error: &clap::Error) -> ! {
    let _ = error.print();
    std::process::exit(if error.use_stderr() {
        i32::from(EXIT_USAGE)
    } else {
        0
    })
}

/// The settings of `groups` whose flag, variable or default a `--help`
/// text leaves out, one line each (tests of the binaries' help).
pub fn missing_from_help(help: &str, groups: &[Group]) -> Vec<String> {
    let mut missing = Vec::new();
    for setting in groups.iter().flat_map(|g| g.settings) {
        let default = format!("[default: {}]", setting.default);
        for (what, text) in [
            ("flag", format!("--{} <VALUE>", setting.flag())),
            ("variable", format!("[env: {}]", setting.env)),
            ("default", default),
        ] {
            if (what != "default" || !setting.default.is_empty()) && !help.contains(&text) {
                missing.push(format!(
                    "{}: {what} {text:?} missing from --help",
                    setting.env
                ));
            }
        }
    }
    missing
}

/// What is wrong with a settings table against the config reader `read`
/// (a config's `from_reader`): a name read but not in `groups`, a name in
/// `groups` never read or not in `--help`, a name twice, or a default that is not the
/// config's (setting the variable to it changes the config's `Debug`).
/// Names read are collected over every map of `maps` (conditional reads);
/// defaults are checked against the first map, which must read without
/// error.
///
/// # Panics
/// When the command built from `groups` breaks clap's rules (two settings
/// with one flag): clap's `debug_assert`.
pub fn table_problems<C: Debug, E: Display>(
    groups: &[Group],
    maps: &[&[(&str, &str)]],
    read: impl Fn(EnvReader) -> Result<C, E>,
) -> Vec<String> {
    let mut command = command("table", "", "", groups);
    command.clone().debug_assert();
    let help = command.render_help().to_string();
    let reader = |map: &[(&str, &str)], log: &ReadLog| {
        EnvReader::from_map(map.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
            .logging_to(log)
    };
    let mut problems = Vec::new();
    let mut table = BTreeSet::new();
    for setting in groups.iter().flat_map(|g| g.settings) {
        if !table.insert(setting.env) {
            problems.push(format!("{}: twice in the table", setting.env));
        }
    }
    problems.extend(missing_from_help(&help, groups));
    let log = ReadLog::default();
    let base = maps.first().copied().unwrap_or_default();
    let baseline = match read(reader(base, &log)) {
        Ok(config) => format!("{config:?}"),
        Err(e) => return vec![format!("the first map must read without error: {e}")],
    };
    for map in maps.iter().skip(1) {
        let _ = read(reader(map, &log));
    }
    let read_names: BTreeSet<&str> = log.names().into_iter().collect();
    for name in read_names.difference(&table) {
        problems.push(format!("{name}: read but not in the settings table"));
    }
    for name in table.difference(&read_names) {
        problems.push(format!("{name}: in the settings table but never read"));
    }
    for setting in groups.iter().flat_map(|g| g.settings) {
        if setting.default.is_empty() || base.iter().any(|(k, _)| *k == setting.env) {
            continue;
        }
        let mut map = base.to_vec();
        map.push((setting.env, setting.default));
        match read(reader(&map, &ReadLog::default())) {
            Ok(config) if format!("{config:?}") == baseline => {}
            Ok(_) => problems.push(format!(
                "{}: the table's default {:?} is not the config's",
                setting.env, setting.default
            )),
            Err(e) => problems.push(format!(
                "{}: the table's default {:?} is refused: {e}",
                setting.env, setting.default
            )),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: Group = Group {
        heading: "Test",
        settings: &[
            Setting {
                env: "DEMO_LISTEN",
                default: "127.0.0.1:1",
                help: "where to listen",
            },
            Setting {
                env: "DEMO_NAME",
                default: "",
                help: "a name",
            },
        ],
    };
    const GROUPS: &[Group] = &[KAFKA, OWN];

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn reader(args: &[&str], env: &[(&str, &str)]) -> EnvReader {
        let matches = command("demo", "a demo", "1.2.3", GROUPS)
            .try_get_matches_from(std::iter::once("demo").chain(args.iter().copied()))
            .unwrap();
        overlay(&matches, GROUPS, vars(env))
    }

    #[test]
    fn a_flag_beats_its_variable_and_an_unset_one_is_left_to_the_config() {
        let env = [
            ("DEMO_LISTEN", "10.0.0.1:5"),
            ("KAFKA_BOOTSTRAP_SERVERS", "env:9092"),
        ];
        let mut r = reader(&["--kafka-bootstrap-servers", "flag:9092"], &env);
        assert_eq!(r.string("KAFKA_BOOTSTRAP_SERVERS", "default"), "flag:9092");
        assert_eq!(r.string("DEMO_LISTEN", "default"), "10.0.0.1:5");
        // Not given anywhere: the config's default, not the table's.
        assert_eq!(r.string("DEMO_NAME", "config default"), "config default");
        assert_eq!(r.optional("KAFKA_REPLICATION_FACTOR"), None);
        // Variables the table does not name pass through untouched.
        let mut r = reader(&[], &[("OTHER", "x")]);
        assert_eq!(r.optional("OTHER").as_deref(), Some("x"));
    }

    #[test]
    fn help_names_every_variable_and_default_and_the_telemetry_ones() {
        let help = command("demo", "a demo", "1.2.3", GROUPS)
            .render_help()
            .to_string();
        assert_eq!(missing_from_help(&help, GROUPS), Vec::<String>::new());
        let partial = command("demo", "", "", &[KAFKA]).render_help().to_string();
        assert_eq!(missing_from_help(&partial, GROUPS).len(), 5, "{partial}");
        for setting in TELEMETRY.settings {
            assert!(help.contains(setting.env), "{help}");
        }
        assert!(help.contains("Kafka:") && help.contains("Test:"), "{help}");
    }

    #[test]
    fn version_typos_and_missing_values_are_clap_errors() {
        let cmd = || command("demo", "a demo", "1.2.3", GROUPS);
        let version = cmd()
            .try_get_matches_from(["demo", "--version"])
            .unwrap_err();
        assert!(!version.use_stderr());
        assert!(version.to_string().contains("demo 1.2.3"), "{version}");
        let typo = cmd()
            .try_get_matches_from(["demo", "--kafka-bootstrp-servers", "x"])
            .unwrap_err();
        assert!(typo.use_stderr());
        assert!(
            typo.to_string().contains("--kafka-bootstrap-servers"),
            "{typo}"
        );
        let missing = cmd().try_get_matches_from(["demo", "--demo-name"]);
        assert!(missing.unwrap_err().use_stderr());
    }

    #[derive(Debug)]
    #[allow(dead_code)] // Read through `Debug` only.
    struct Demo(String, String);

    fn demo(mut env: EnvReader) -> Result<Demo, crate::env::ConfigError> {
        let listen = env.string("DEMO_LISTEN", "127.0.0.1:1");
        let name = env.string("DEMO_NAME", "");
        let _ = crate::kafka::KafkaConfig::from_env(&mut env, "demo");
        env.finish()?;
        Ok(Demo(listen, name))
    }

    #[test]
    fn a_table_that_drifts_from_its_config_is_caught() {
        assert_eq!(table_problems(GROUPS, &[&[]], demo), Vec::<String>::new());
        const WRONG: Group = Group {
            heading: "Test",
            settings: &[
                Setting {
                    env: "DEMO_LISTEN",
                    default: "127.0.0.1:2",
                    help: "",
                },
                Setting {
                    env: "DEMO_GONE",
                    default: "",
                    help: "",
                },
            ],
        };
        let problems = table_problems(&[KAFKA, WRONG], &[&[]], demo);
        assert_eq!(problems.len(), 3, "{problems:?}");
        let text = problems.join("\n");
        for needle in [
            "DEMO_NAME: read but not",
            "DEMO_GONE: in the settings table but never read",
            "DEMO_LISTEN: the table's default",
        ] {
            assert!(text.contains(needle), "{text}");
        }
    }
}
