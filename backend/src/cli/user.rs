//! `graftbench user`: accounts from the server's command line, the audited break-glass
//! path (grants here are in force at once).

use super::global::Global;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use graftbench::service::accounts::{self as service, DisableChange, Grantor, RolesChange};
use graftbench::service::auth;
use graftbench::store::Database;
use graftbench_domain::accounts;
use graftbench_domain::Role;
use std::io::{IsTerminal, Read};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Creates a user. The password is read from the terminal, or from standard input
    /// with --password-stdin; never from the command line, where other users could see it.
    Add {
        /// Login name.
        name: String,
        /// Role to grant; repeat for several.
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        /// Name shown in the UI (default: the login name).
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Lists users, their roles, and whether each is disabled or a demo account.
    List,
    /// Sets a new password (read as for `add`). A demo account stops being one.
    Passwd {
        /// Login name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disables an account: it cannot sign in, and its sessions end at once. The row stays
    /// (the audit trail names it). The last enabled admin cannot be disabled.
    Disable {
        /// Login name.
        name: String,
    },
    /// Enables a disabled account again.
    Enable {
        /// Login name.
        name: String,
    },
    /// Grants and revokes roles; prints the roles the user holds afterwards.
    Roles {
        /// Login name.
        name: String,
        /// Role to grant; repeat for several.
        #[arg(long, value_parser = parse_role)]
        grant: Vec<Role>,
        /// Role to revoke; repeat for several.
        #[arg(long, value_parser = parse_role)]
        revoke: Vec<Role>,
    },
}

fn parse_role(name: &str) -> Result<Role, String> {
    Role::parse(name).ok_or_else(|| {
        let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("unknown role `{name}`; roles are: {}", all.join(", "))
    })
}

pub async fn run(global: &Global, command: UserCommand) -> Result<()> {
    let db = global.open_database().await?;
    match command {
        UserCommand::Add {
            name,
            roles,
            display_name,
            password_stdin,
        } => add(&db, &name, &roles, display_name.as_deref(), password_stdin).await,
        UserCommand::List => list(&db).await,
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let password = read_new_password(&name, password_stdin)?;
            let hash = auth::hash_password(&password)?;
            if !service::set_password(&db, "system", &name, &hash).await? {
                bail!("no user `{name}`");
            }
            println!("password of {name} changed");
            Ok(())
        }
        UserCommand::Disable { name } => set_disabled(&db, &name, true).await,
        UserCommand::Enable { name } => set_disabled(&db, &name, false).await,
        UserCommand::Roles {
            name,
            grant,
            revoke,
        } => set_roles(&db, &name, &grant, &revoke).await,
    }
}

async fn add(
    db: &Database,
    name: &str,
    roles: &[Role],
    display_name: Option<&str>,
    password_stdin: bool,
) -> Result<()> {
    accounts::check_username(name)?;
    if let Some(display) = display_name {
        accounts::check_display_name(display)?;
    }
    let password = read_new_password(name, password_stdin)?;
    let hash = auth::hash_password(&password)?;
    match service::create_user(db, name, display_name.unwrap_or(name), &hash, roles).await? {
        Some(_) => {
            let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            println!("created user {name} ({})", roles.join(", "));
            Ok(())
        }
        None => bail!("a user named `{name}` already exists"),
    }
}

async fn list(db: &Database) -> Result<()> {
    for user in db.list_users().await? {
        let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
        let mut marks = Vec::new();
        if user.disabled_at.is_some() {
            marks.push("disabled");
        }
        if user.demo {
            marks.push("demo");
        }
        // Names made before display names were checked may hold anything: a terminal
        // must not obey it.
        println!(
            "{}\t{}\t{}{}",
            user.username.escape_debug(),
            user.display_name.escape_debug(),
            roles.join(","),
            if marks.is_empty() {
                String::new()
            } else {
                format!("\t({})", marks.join(", "))
            }
        );
    }
    Ok(())
}

async fn set_disabled(db: &Database, name: &str, disabled: bool) -> Result<()> {
    let verb = if disabled { "disabled" } else { "enabled" };
    match service::set_disabled(db, Grantor::CommandLine, name, disabled).await? {
        DisableChange::Changed => println!("{name} {verb}"),
        DisableChange::Unchanged => println!("{name} was already {verb}"),
        DisableChange::NoSuchUser => bail!("no user `{name}`"),
        DisableChange::LastAdmin => {
            bail!("`{name}` is the last enabled admin: make someone else an admin first")
        }
        // Only the web refuses demo accounts; the command line is the break-glass path.
        DisableChange::DemoAccount => bail!("`{name}` is a demo account"),
    }
    Ok(())
}

/// A new password for `name`, from the terminal (asked twice) or standard input.
fn read_new_password(name: &str, password_stdin: bool) -> Result<String> {
    let password = if password_stdin {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading the password from standard input")?;
        input.lines().next().unwrap_or_default().to_owned()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {name}: "))?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    } else {
        bail!("no terminal to ask for a password: pass --password-stdin and pipe it in");
    };
    accounts::check_password(&password)?;
    Ok(password)
}

async fn set_roles(db: &Database, name: &str, grant: &[Role], revoke: &[Role]) -> Result<()> {
    // Contradictions are refused before the user is looked up.
    accounts::roles_after(&[], grant, revoke)?;
    let Some(user) = db.user_by_name(name).await? else {
        bail!("no user `{name}` (see `graftbench user list`)");
    };
    let roles = accounts::roles_after(&user.user.roles, grant, revoke)?;
    // The server's command line is the audited break-glass path: in force at once.
    match service::set_roles(db, Grantor::CommandLine, name, &roles).await? {
        RolesChange::Changed { after, .. } | RolesChange::Unchanged { roles: after, .. } => {
            let names: Vec<&str> = after.iter().map(|r| r.as_str()).collect();
            println!("{name}\t{}", names.join(","));
            Ok(())
        }
        RolesChange::NoSuchUser => bail!("no user `{name}`"),
        RolesChange::LastAdmin => {
            bail!("`{name}` is the last admin: make someone else an admin first")
        }
    }
}
