//! DescribeUserScramCredentials and AlterUserScramCredentials: users' SCRAM credentials, as
//! Kafka's `kafka-configs --entity-type users` and the Admin client manage them. Credentials
//! take effect at once (the next authentication uses them) and are stored; the answer leaves
//! once they are.
//!
//! With ACLs on, describing needs DESCRIBE on the cluster and altering ALTER on the cluster,
//! as Kafka's `KafkaApis` and `ControllerApis` check them.

use super::{Effects, ReplyJob, Then};
use crate::codec::generated::ResponseBody;
use crate::codec::generated::alter_user_scram_credentials::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, AlterUserScramCredentialsResult,
};
use crate::codec::generated::describe_user_scram_credentials::{
    CredentialInfo, DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
    DescribeUserScramCredentialsResult,
};
use crate::codec::{ErrorCode, KStr};
use crate::io::Command;
use crate::request::Req;
use crate::security::acl::{CLUSTER_NAME, Operation, ResourceType};
use crate::security::scram::{self, ScramCredential, ScramHash};
use crate::state::State;
use hashbrown::{HashMap, HashSet};

fn describe_result(st: &State, user: &KStr) -> DescribeUserScramCredentialsResult {
    let creds = st.credentials.of(user);
    let mut r = DescribeUserScramCredentialsResult { user: user.clone(), ..Default::default() };
    if creds.is_empty() {
        r.error_code = ErrorCode::RESOURCE_NOT_FOUND.0;
        r.error_message = Some(KStr::from_static("Attempt to describe a user credential that does not exist"));
    }
    r.credential_infos = creds
        .iter()
        .map(|(h, c)| CredentialInfo { mechanism: h.wire(), iterations: c.iterations, ..Default::default() })
        .collect();
    r
}

/// The message Kafka gives CLUSTER_AUTHORIZATION_FAILED.
const CLUSTER_REFUSED: &str = "Cluster authorization failed.";

/// DescribeUserScramCredentials refused: the error at the top and, as Kafka's
/// `getErrorResponse` has it, once more for each user asked about (with no user name).
fn describe_refused(m: &DescribeUserScramCredentialsRequest) -> DescribeUserScramCredentialsResponse {
    let code = ErrorCode::CLUSTER_AUTHORIZATION_FAILED.0;
    let message = Some(KStr::from_static(CLUSTER_REFUSED));
    let result =
        DescribeUserScramCredentialsResult { error_code: code, error_message: message.clone(), ..Default::default() };
    DescribeUserScramCredentialsResponse {
        error_code: code,
        error_message: message,
        results: m.users.iter().flatten().map(|_| result.clone()).collect(),
        ..Default::default()
    }
}

pub(crate) fn describe(st: &State, fx: &mut Effects, req: Req, m: &DescribeUserScramCredentialsRequest) {
    if !st.allowed(&req, Operation::DESCRIBE, ResourceType::CLUSTER, CLUSTER_NAME) {
        return fx.respond(req, ResponseBody::DescribeUserScramCredentials(describe_refused(m)));
    }
    let mut resp = DescribeUserScramCredentialsResponse::default();
    match m.users.as_deref() {
        // Null or empty: every user that has a credential.
        None | Some([]) => resp.results = st.credentials.users().iter().map(|u| describe_result(st, u)).collect(),
        Some(users) => {
            let mut mentions: HashMap<&KStr, usize> = HashMap::with_capacity(users.len());
            for u in users {
                *mentions.entry(&u.name).or_default() += 1;
            }
            for u in users {
                match mentions.get_mut(&u.name) {
                    // Answered already.
                    Some(0) | None => {}
                    Some(1) => resp.results.push(describe_result(st, &u.name)),
                    Some(n) => {
                        *n = 0;
                        resp.results.push(DescribeUserScramCredentialsResult {
                            user: u.name.clone(),
                            error_code: ErrorCode::DUPLICATE_RESOURCE.0,
                            error_message: Some(KStr::from(format!(
                                "Cannot describe SCRAM credentials for the same user twice in a single request: {}",
                                u.name
                            ))),
                            ..Default::default()
                        });
                        continue;
                    }
                }
                if let Some(n) = mentions.get_mut(&u.name) {
                    *n = 0;
                }
            }
        }
    }
    fx.respond(req, ResponseBody::DescribeUserScramCredentials(resp));
}

/// Why one alteration is refused, if it is.
fn check(
    name: &KStr,
    mechanism: i8,
    iterations: Option<i32>,
    salt: Option<&[u8]>,
) -> Result<ScramHash, (ErrorCode, String)> {
    if name.is_empty() {
        return Err((ErrorCode::UNACCEPTABLE_CREDENTIAL, "Username must not be empty".into()));
    }
    if name.len() > scram::MAX_USER {
        return Err((ErrorCode::UNACCEPTABLE_CREDENTIAL, "Username is too long".into()));
    }
    let hash = ScramHash::from_wire(mechanism)
        .ok_or_else(|| (ErrorCode::UNSUPPORTED_SASL_MECHANISM, format!("Unknown SCRAM mechanism {mechanism}")))?;
    if let Some(i) = iterations {
        if i < scram::MIN_ITERATIONS {
            return Err((ErrorCode::UNACCEPTABLE_CREDENTIAL, format!("Too few iterations: {i}")));
        }
        if i > scram::MAX_ITERATIONS {
            return Err((ErrorCode::UNACCEPTABLE_CREDENTIAL, format!("Too many iterations: {i}")));
        }
    }
    if salt.is_some_and(|s| s.is_empty() || s.len() > scram::MAX_SALT) {
        return Err((ErrorCode::UNACCEPTABLE_CREDENTIAL, "Salt must be 1 to 1024 bytes".into()));
    }
    Ok(hash)
}

/// AlterUserScramCredentials refused: every user named (once, sorted, as Kafka's
/// `getErrorResponse` lists them) gets CLUSTER_AUTHORIZATION_FAILED.
fn alter_refused(m: &AlterUserScramCredentialsRequest) -> AlterUserScramCredentialsResponse {
    let mut users: Vec<&KStr> =
        m.deletions.iter().map(|d| &d.name).chain(m.upsertions.iter().map(|u| &u.name)).collect();
    users.sort();
    users.dedup();
    let results = users
        .into_iter()
        .map(|user| AlterUserScramCredentialsResult {
            user: user.clone(),
            error_code: ErrorCode::CLUSTER_AUTHORIZATION_FAILED.0,
            error_message: Some(KStr::from_static(CLUSTER_REFUSED)),
            ..Default::default()
        })
        .collect();
    AlterUserScramCredentialsResponse { results, ..Default::default() }
}

pub(crate) fn alter(st: &mut State, fx: &mut Effects, req: Req, m: &AlterUserScramCredentialsRequest) {
    if !st.allowed(&req, Operation::ALTER, ResourceType::CLUSTER, CLUSTER_NAME) {
        return fx.respond(req, ResponseBody::AlterUserScramCredentials(alter_refused(m)));
    }
    // One result per user, in order of first mention; a user's first error wins.
    let mut results: Vec<AlterUserScramCredentialsResult> = Vec::new();
    let mut index: HashMap<KStr, usize> = HashMap::new();
    let mentions =
        m.deletions.iter().map(|d| (&d.name, d.mechanism)).chain(m.upsertions.iter().map(|u| (&u.name, u.mechanism)));
    // A user and mechanism named twice (deleted and upserted, or either twice) is refused.
    let mut seen: HashSet<(&KStr, i8)> = HashSet::new();
    let mut duplicates: Vec<&KStr> = Vec::new();
    for (user, mechanism) in mentions {
        index.entry(user.clone()).or_insert_with(|| {
            results.push(AlterUserScramCredentialsResult { user: user.clone(), ..Default::default() });
            results.len() - 1
        });
        if !seen.insert((user, mechanism)) {
            duplicates.push(user);
        }
    }
    let mut fail = |user: &KStr, code: ErrorCode, msg: String| {
        if let Some(r) = index.get(user).and_then(|i| results.get_mut(*i))
            && r.error_code == 0
        {
            r.error_code = code.0;
            r.error_message = Some(KStr::from(msg));
        }
    };
    for user in duplicates {
        fail(
            user,
            ErrorCode::DUPLICATE_RESOURCE,
            "A user credential cannot be altered twice in the same request".into(),
        );
    }
    let mut changes: Vec<Change> = Vec::new();
    for d in &m.deletions {
        match check(&d.name, d.mechanism, None, None) {
            Err((code, msg)) => fail(&d.name, code, msg),
            Ok(hash) if st.credentials.get(&d.name, hash).is_none() => fail(
                &d.name,
                ErrorCode::RESOURCE_NOT_FOUND,
                "Attempt to delete a user credential that does not exist".into(),
            ),
            Ok(hash) => changes.push((d.name.clone(), hash, None)),
        }
    }
    for u in &m.upsertions {
        match check(&u.name, u.mechanism, Some(u.iterations), Some(&u.salt)) {
            Err((code, msg)) => fail(&u.name, code, msg),
            Ok(hash) if u.salted_password.len() != hash.output_len() => fail(
                &u.name,
                ErrorCode::UNACCEPTABLE_CREDENTIAL,
                format!("The salted password must be {} bytes for {}", hash.output_len(), hash.mechanism_name()),
            ),
            Ok(hash) => changes.push((
                u.name.clone(),
                hash,
                Some(ScramCredential::from_salted_password(hash, &u.salted_password, &u.salt, u.iterations)),
            )),
        }
    }
    // A user with any error has none of its changes applied.
    changes.retain(|(user, ..)| index.get(user).and_then(|i| results.get(*i)).is_some_and(|r| r.error_code == 0));
    let keys: Vec<_> = changes
        .iter()
        .map(|(user, hash, cred)| (user.clone(), *hash, cred.as_ref().map(ScramCredential::encode)))
        .collect();
    let resp = AlterUserScramCredentialsResponse { results, ..Default::default() };
    let parts = changes.len();
    let job = super::reply_after(
        st,
        fx,
        req,
        ResponseBody::AlterUserScramCredentials(resp),
        parts,
        Then::ScramCredentials(changes),
    );
    for (part, (user, hash, value)) in keys.into_iter().enumerate() {
        fx.storage(super::CmdOwner::Job { job, part }, Command::Put { key: scram::credential_key(&user, hash), value });
    }
}

/// One credential change: the user, the mechanism, the new credential (`None`: deleted).
pub(crate) type Change = (KStr, ScramHash, Option<ScramCredential>);

/// Stored changes take effect (the next authentication uses them); a user whose change could
/// not be stored is answered with the store's error and keeps what it had.
pub(crate) fn finish_alter(st: &mut State, job: &mut ReplyJob) {
    let Then::ScramCredentials(changes) = &mut job.then else { return };
    let ResponseBody::AlterUserScramCredentials(r) = &mut job.body else { return };
    for ((user, hash, cred), err) in changes.drain(..).zip(&job.results) {
        match err {
            None => st.credentials.set(&user, hash, cred),
            Some(e) => {
                if let Some(res) = r.results.iter_mut().find(|x| x.user == user && x.error_code == 0) {
                    res.error_code = e.error_code().0;
                    res.error_message = Some(KStr::from_static("The credential could not be stored"));
                }
            }
        }
    }
}
