//! `checkout-stack token`: prints a bearer token signed with `JWT_SECRET`,
//! for deployments where nothing else prints one (docker compose:
//! `docker compose run --rm --no-deps -T gateway checkout-stack token --user 1`).
//! The secret rules and the signing are the contract's ([`checkout_contract::auth`]);
//! `main.rs` reads the environment and prints.

use std::time::Duration;

use checkout_contract::auth::{JwtIssuer, Role, SecretError, jwt_secret};
use checkout_contract::domain::UserId;

pub const USAGE: &str = "usage:
  checkout-stack token --user ID [--role user] [--ttl-secs N]
                                  a token for user ID (acts only on ID's checkouts)
  checkout-stack token --role service [--name NAME] [--ttl-secs N]
                                  a service token (acts for any user; sub NAME, default checkout-stack-cli)
Signed with JWT_SECRET (at least 16 characters), the secret the gateway and
blazing_sun verify with; valid for --ttl-secs (default 86400). Prints the token only.";

/// The default lifetime: a day, like the launcher's demo tokens.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// The default subject of a service token.
pub const DEFAULT_SERVICE_NAME: &str = "checkout-stack-cli";

/// What to sign, from the arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub subject: String,
    pub role: Role,
    pub ttl: Duration,
}

/// What `token` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Issue(TokenRequest),
}

/// Parses the arguments after `token`.
///
/// # Errors
/// A message naming the bad argument.
pub fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut user = None;
    let mut name = None;
    let mut role = Role::User;
    let mut ttl = DEFAULT_TTL;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let flag = flag.as_str();
        if matches!(flag, "--help" | "-h") {
            return Ok(Command::Help);
        }
        let value = match flag {
            "--user" | "--role" | "--name" | "--ttl-secs" => {
                args.next().ok_or_else(|| format!("{flag} needs a value"))?
            }
            other => return Err(format!("unknown argument {other:?}")),
        };
        match flag {
            "--user" => {
                let id = value
                    .parse::<i64>()
                    .ok()
                    .and_then(|id| UserId::parse(id).ok())
                    .ok_or_else(|| format!("--user must be a positive user id, got {value:?}"))?;
                user = Some(id);
            }
            "--role" => {
                role = match value.as_str() {
                    "user" => Role::User,
                    "service" => Role::Service,
                    other => {
                        return Err(format!("--role must be user or service, got {other:?}"));
                    }
                }
            }
            "--name" => name = Some(value.clone()),
            _ => {
                let secs = value
                    .parse::<u64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| {
                        format!("--ttl-secs must be a positive number of seconds, got {value:?}")
                    })?;
                ttl = Duration::from_secs(secs);
            }
        }
    }
    let subject = match (role, user, name) {
        (Role::User, Some(user), None) => user.to_string(),
        (Role::User, None, _) => return Err("--user ID is required for a user token".into()),
        (Role::User, Some(_), Some(_)) => {
            return Err("--name is for service tokens (--role service)".into());
        }
        (Role::Service, Some(_), _) => {
            return Err(
                "a service token acts for every user and names none: drop --user (or --role service)"
                    .into(),
            );
        }
        (Role::Service, None, name) => {
            let name = name.unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
            if name.trim().is_empty() {
                return Err("--name must not be empty".into());
            }
            name
        }
    };
    Ok(Command::Issue(TokenRequest { subject, role, ttl }))
}

/// Signs `request` with the `JWT_SECRET` value `secret`.
///
/// # Errors
/// When the secret is unset or shorter than the contract's minimum.
pub fn issue(request: &TokenRequest, secret: Option<String>) -> Result<String, SecretError> {
    let secret = jwt_secret(secret)?;
    Ok(JwtIssuer::new(&secret).issue(&request.subject, request.role, request.ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn user_and_service_tokens_parse() {
        assert_eq!(
            parse(&["--user", "7"]),
            Ok(Command::Issue(TokenRequest {
                subject: "7".into(),
                role: Role::User,
                ttl: DEFAULT_TTL
            }))
        );
        assert_eq!(
            parse(&["--role", "service", "--name", "billing", "--ttl-secs", "60"]),
            Ok(Command::Issue(TokenRequest {
                subject: "billing".into(),
                role: Role::Service,
                ttl: Duration::from_secs(60)
            }))
        );
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
    }

    #[test]
    fn bad_arguments_are_named() {
        for (args, needle) in [
            (&[][..], "--user ID is required"),
            (&["--user"][..], "--user needs a value"),
            (&["--user", "0"][..], "positive user id"),
            (&["--user", "abc"][..], "positive user id"),
            (&["--user", "1", "--role", "admin"][..], "user or service"),
            (&["--user", "1", "--role", "service"][..], "drop --user"),
            (&["--user", "1", "--ttl-secs", "0"][..], "--ttl-secs"),
            (
                &["--user", "1", "--bogus"][..],
                "unknown argument \"--bogus\"",
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
