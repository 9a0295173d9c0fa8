//! `kelp user`: manage users' SCRAM credentials on a running kelp, the way `kafka-configs
//! --entity-type users --alter --add-config 'SCRAM-SHA-512=[password=...]'` does on Kafka: it
//! sends DescribeUserScramCredentials and AlterUserScramCredentials to a listener that needs no
//! authentication (a PLAINTEXT listener on loopback, say). The password is salted here, so only
//! the salted form crosses the wire; it is read from standard input or an environment
//! variable, never from the command line.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use kelp_core::codec::generated::alter_user_scram_credentials::{
    AlterUserScramCredentialsRequest, ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kelp_core::codec::generated::describe_user_scram_credentials::{DescribeUserScramCredentialsRequest, UserName};
use kelp_core::codec::generated::header::ResponseHeader;
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{ErrorCode, KStr, Message, Reader, encode_request_frame};
use kelp_core::security::Mechanism;
use kelp_core::security::scram::{MAX_ITERATIONS, MIN_ITERATIONS, ScramHash};

/// How long to wait for kelp's answer.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

#[derive(Args, Debug)]
pub struct UserArgs {
    /// A listener of the running kelp that needs no authentication.
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    bootstrap: String,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Create a user or change its password.
    Set {
        /// The user name.
        name: String,
        /// SCRAM mechanisms to set a credential for (default: both).
        #[arg(long = "mechanism", value_parser = ["SCRAM-SHA-256", "SCRAM-SHA-512"])]
        mechanisms: Vec<String>,
        /// PBKDF2 iterations (4096 to 16384).
        #[arg(long, default_value_t = 8192)]
        iterations: i32,
        /// Read the password from this environment variable instead of standard input.
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
    },
    /// Delete a user's credentials.
    Delete {
        /// The user name.
        name: String,
        /// SCRAM mechanisms to delete the credential of (default: every one the user has).
        #[arg(long = "mechanism", value_parser = ["SCRAM-SHA-256", "SCRAM-SHA-512"])]
        mechanisms: Vec<String>,
    },
    /// List users and their mechanisms.
    List,
}

/// Runs `kelp user ...`.
pub fn run(args: &UserArgs) -> anyhow::Result<()> {
    let addr = args
        .bootstrap
        .to_socket_addrs()
        .with_context(|| format!("--bootstrap {}", args.bootstrap))?
        .next()
        .with_context(|| format!("--bootstrap {} names no address", args.bootstrap))?;
    match &args.action {
        Action::Set { name, mechanisms, iterations, password_env } => {
            if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(iterations) {
                bail!("--iterations must be {MIN_ITERATIONS} to {MAX_ITERATIONS}");
            }
            let password = read_password(password_env.as_deref())?;
            let upsertions = hashes(mechanisms)
                .into_iter()
                .map(|hash| {
                    let mut salt = [0u8; 24];
                    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness for the salt: {e}"))?;
                    let rounds = u32::try_from(*iterations).unwrap_or(4096);
                    Ok(ScramCredentialUpsertion {
                        name: KStr::from(name.as_str()),
                        mechanism: hash.wire(),
                        iterations: *iterations,
                        salt: Bytes::copy_from_slice(&salt),
                        salted_password: Bytes::from(hash.salted_password(password.as_bytes(), &salt, rounds)),
                        ..Default::default()
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let req = AlterUserScramCredentialsRequest { upsertions, ..Default::default() };
            alter(addr, req)?;
            println!("set {} credential(s) for {name}", hashes(mechanisms).len());
        }
        Action::Delete { name, mechanisms } => {
            let hashes = if mechanisms.is_empty() {
                let (_, infos) = describe(addr, Some(name))?.into_iter().next().context("no answer for the user")?;
                infos.iter().filter_map(|(m, _)| ScramHash::from_wire(*m)).collect()
            } else {
                hashes(mechanisms)
            };
            let deletions = hashes
                .iter()
                .map(|h| ScramCredentialDeletion {
                    name: KStr::from(name.as_str()),
                    mechanism: h.wire(),
                    ..Default::default()
                })
                .collect();
            alter(addr, AlterUserScramCredentialsRequest { deletions, ..Default::default() })?;
            println!("deleted {} credential(s) of {name}", hashes.len());
        }
        Action::List => {
            for (user, infos) in describe(addr, None)? {
                let list: Vec<String> = infos
                    .iter()
                    .map(|(m, i)| {
                        let name = ScramHash::from_wire(*m).map_or("unknown", ScramHash::mechanism_name);
                        format!("{name} (iterations {i})")
                    })
                    .collect();
                println!("{user}: {}", list.join(", "));
            }
        }
    }
    Ok(())
}

/// The hashes named (both when none is).
fn hashes(names: &[String]) -> Vec<ScramHash> {
    if names.is_empty() {
        return ScramHash::ALL.to_vec();
    }
    let mut v: Vec<ScramHash> = names.iter().filter_map(|n| Mechanism::parse(n).and_then(Mechanism::scram)).collect();
    v.sort();
    v.dedup();
    v
}

/// The password: from the environment variable `var`, else the first line of standard input.
fn read_password(var: Option<&str>) -> anyhow::Result<String> {
    let password = match var {
        Some(v) => std::env::var(v).with_context(|| format!("--password-env {v}: the variable is not set"))?,
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

fn alter(addr: SocketAddr, req: AlterUserScramCredentialsRequest) -> anyhow::Result<()> {
    let ResponseBody::AlterUserScramCredentials(resp) = call(addr, &RequestBody::AlterUserScramCredentials(req))?
    else {
        bail!("kelp answered AlterUserScramCredentials with another response");
    };
    for r in &resp.results {
        if r.error_code != 0 {
            bail!("{}: {} {}", r.user, ErrorCode(r.error_code), r.error_message.as_deref().unwrap_or(""));
        }
    }
    Ok(())
}

/// A user with its credentials' (mechanism number, iterations).
type Described = (String, Vec<(i8, i32)>);

/// Each user (all, or `name`) with its credentials.
fn describe(addr: SocketAddr, name: Option<&str>) -> anyhow::Result<Vec<Described>> {
    let users = name.map(|n| vec![UserName { name: KStr::from(n), ..Default::default() }]);
    let req = DescribeUserScramCredentialsRequest { users, ..Default::default() };
    let ResponseBody::DescribeUserScramCredentials(resp) = call(addr, &RequestBody::DescribeUserScramCredentials(req))?
    else {
        bail!("kelp answered DescribeUserScramCredentials with another response");
    };
    if resp.error_code != 0 {
        bail!("{} {}", ErrorCode(resp.error_code), resp.error_message.as_deref().unwrap_or(""));
    }
    let mut out = Vec::new();
    for r in resp.results {
        if r.error_code != 0 {
            bail!("{}: {} {}", r.user, ErrorCode(r.error_code), r.error_message.as_deref().unwrap_or(""));
        }
        out.push((r.user.to_string(), r.credential_infos.iter().map(|c| (c.mechanism, c.iterations)).collect()));
    }
    Ok(out)
}

/// Sends one request at version 0 and reads its answer.
fn call(addr: SocketAddr, body: &RequestBody) -> anyhow::Result<ResponseBody> {
    let key = body.api_key();
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.write_all(&encode_request_frame(body, 0, 1, Some("kelp-user")))
        .with_context(|| format!("sending {key:?} to {addr}"))?;
    let mut size = [0u8; 4];
    s.read_exact(&mut size)
        .with_context(|| format!("{addr} closed the connection: is it a listener that needs no authentication?"))?;
    let len =
        usize::try_from(i32::from_be_bytes(size)).ok().filter(|l| *l <= MAX_RESPONSE).context("bad response size")?;
    let mut frame = vec![0u8; len];
    s.read_exact(&mut frame).context("reading the response")?;
    let frame = Bytes::from(frame);
    let mut r = Reader::new(&frame);
    let header = ResponseHeader::decode(&mut r, key.response_header_version(0)).context("bad response header")?;
    if header.correlation_id != 1 {
        bail!("the response answers another request");
    }
    ResponseBody::decode(key, &mut r, 0).map_err(|e| anyhow::anyhow!("bad {key:?} response: {e:?}"))
}
