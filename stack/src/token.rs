//! `checkout-stack token`: prints a bearer token signed with `JWT_SECRET`,
//! for deployments where nothing else prints one (docker compose:
//! `docker compose run --rm --no-deps -T gateway checkout-stack token --user 1`).
//! The secret rules and the signing are the contract's ([`checkout_contract::auth`]);
//! the arguments are [`TokenArgs`]; `main.rs` reads the environment and prints.

use std::time::Duration;

use checkout_contract::auth::{JwtIssuer, Role, SecretError, jwt_secret};
use checkout_contract::domain::UserId;

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

/// `checkout-stack token`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(
    after_help = "Signed with JWT_SECRET (at least 16 characters), the secret the gateway and \
blazing_sun verify with. Prints the token only."
)]
pub struct TokenArgs {
    /// A token for user ID: it acts only on ID's checkouts (required for a user token).
    #[arg(long, value_name = "ID", value_parser = user_id)]
    pub user: Option<UserId>,
    /// user, or service: a service token acts for any user (sub NAME).
    #[arg(long, value_name = "ROLE", default_value = "user", value_parser = role)]
    pub role: Role,
    /// The subject of a service token (default checkout-stack-cli).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// How long the token is valid, in seconds.
    #[arg(long = "ttl-secs", value_name = "N", default_value = "86400", value_parser = ttl)]
    pub ttl: Duration,
}

fn user_id(value: &str) -> Result<UserId, String> {
    value
        .parse::<i64>()
        .ok()
        .and_then(|id| UserId::parse(id).ok())
        .ok_or_else(|| "must be a positive user id".to_owned())
}

fn role(value: &str) -> Result<Role, String> {
    match value {
        "user" => Ok(Role::User),
        "service" => Ok(Role::Service),
        _ => Err("must be user or service".to_owned()),
    }
}

fn ttl(value: &str) -> Result<Duration, String> {
    value
        .parse::<u64>()
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| "must be a positive number of seconds".to_owned())
}

impl TokenArgs {
    /// What to sign.
    ///
    /// # Errors
    /// A user token without `--user` or with `--name`, a service token with
    /// `--user`, an empty name.
    pub fn request(&self) -> Result<TokenRequest, String> {
        let subject = match (self.role, self.user, &self.name) {
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
                let name = name.as_deref().unwrap_or(DEFAULT_SERVICE_NAME);
                if name.trim().is_empty() {
                    return Err("--name must not be empty".into());
                }
                name.to_owned()
            }
        };
        Ok(TokenRequest {
            subject,
            role: self.role,
            ttl: self.ttl,
        })
    }
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
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TokenArgs,
    }

    fn parse(args: &[&str]) -> Result<TokenRequest, String> {
        let cli = Cli::try_parse_from(std::iter::once("token").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.args.request()
    }

    #[test]
    fn user_and_service_tokens_parse() {
        assert_eq!(
            parse(&["--user", "7"]),
            Ok(TokenRequest {
                subject: "7".into(),
                role: Role::User,
                ttl: DEFAULT_TTL
            })
        );
        assert_eq!(
            parse(&["--role", "service", "--name", "billing", "--ttl-secs", "60"]),
            Ok(TokenRequest {
                subject: "billing".into(),
                role: Role::Service,
                ttl: Duration::from_secs(60)
            })
        );
        assert_eq!(
            parse(&["--role", "service"]).map(|r| r.subject),
            Ok(DEFAULT_SERVICE_NAME.to_owned())
        );
    }

    #[test]
    fn bad_arguments_are_named() {
        for (args, needle) in [
            (&[][..], "--user ID is required"),
            (&["--user"][..], "--user <ID>"),
            (&["--user", "0"][..], "positive user id"),
            (&["--user", "abc"][..], "positive user id"),
            (&["--user", "1", "--role", "admin"][..], "user or service"),
            (&["--user", "1", "--role", "service"][..], "drop --user"),
            (
                &["--user", "1", "--name", "x"][..],
                "--name is for service tokens",
            ),
            (
                &["--role", "service", "--name", " "][..],
                "must not be empty",
            ),
            (&["--user", "1", "--ttl-secs", "0"][..], "--ttl-secs"),
            (
                &["--user", "1", "--bogus"][..],
                "unexpected argument '--bogus'",
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
