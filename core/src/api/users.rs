//! DescribeUserScramCredentials and AlterUserScramCredentials: users' SCRAM credentials, as
//! Kafka's `kafka-configs --entity-type users` and the Admin client manage them. Credentials
//! take effect at once (the next authentication uses them) and are stored; the answer leaves
//! once they are.

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
use crate::security::scram::{self, ScramCredential, ScramHash};
use crate::state::State;

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

pub(crate) fn describe(st: &State, fx: &mut Effects, req: Req, m: &DescribeUserScramCredentialsRequest) {
    let mut resp = DescribeUserScramCredentialsResponse::default();
    match &m.users {
        // Null or empty: every user that has a credential.
        None => resp.results = st.credentials.users().iter().map(|u| describe_result(st, u)).collect(),
        Some(users) if users.is_empty() => {
            resp.results = st.credentials.users().iter().map(|u| describe_result(st, u)).collect();
        }
        Some(users) => {
            for u in users {
                if resp.results.iter().any(|r| r.user == u.name) {
                    continue;
                }
                if users.iter().filter(|x| x.name == u.name).count() > 1 {
                    resp.results.push(DescribeUserScramCredentialsResult {
                        user: u.name.clone(),
                        error_code: ErrorCode::DUPLICATE_RESOURCE.0,
                        error_message: Some(KStr::from(format!(
                            "Cannot describe SCRAM credentials for the same user twice in a single request: {}",
                            u.name
                        ))),
                        ..Default::default()
                    });
                } else {
                    resp.results.push(describe_result(st, &u.name));
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

pub(crate) fn alter(st: &mut State, fx: &mut Effects, req: Req, m: &AlterUserScramCredentialsRequest) {
    // One result per user, in order of first mention; a user's first error wins.
    let mut results: Vec<AlterUserScramCredentialsResult> = Vec::new();
    let fail = |results: &mut Vec<AlterUserScramCredentialsResult>, user: &KStr, code: ErrorCode, msg: String| {
        if let Some(r) = results.iter_mut().find(|r| r.user == *user)
            && r.error_code == 0
        {
            r.error_code = code.0;
            r.error_message = Some(KStr::from(msg));
        }
    };
    let mentions =
        m.deletions.iter().map(|d| (&d.name, d.mechanism)).chain(m.upsertions.iter().map(|u| (&u.name, u.mechanism)));
    for (user, _) in mentions.clone() {
        if !results.iter().any(|r| r.user == *user) {
            results.push(AlterUserScramCredentialsResult { user: user.clone(), ..Default::default() });
        }
    }
    // A user and mechanism named twice (deleted and upserted, or either twice) is refused.
    let all: Vec<(&KStr, i8)> = mentions.collect();
    for (i, (user, mech)) in all.iter().enumerate() {
        if all[..i].iter().any(|(u, m)| u == user && m == mech) {
            fail(
                &mut results,
                user,
                ErrorCode::DUPLICATE_RESOURCE,
                "A user credential cannot be altered twice in the same request".into(),
            );
        }
    }
    let mut changes: Vec<(KStr, ScramHash, Option<ScramCredential>)> = Vec::new();
    for d in &m.deletions {
        match check(&d.name, d.mechanism, None, None) {
            Err((code, msg)) => fail(&mut results, &d.name, code, msg),
            Ok(hash) if st.credentials.get(&d.name, hash).is_none() => fail(
                &mut results,
                &d.name,
                ErrorCode::RESOURCE_NOT_FOUND,
                "Attempt to delete a user credential that does not exist".into(),
            ),
            Ok(hash) => changes.push((d.name.clone(), hash, None)),
        }
    }
    for u in &m.upsertions {
        match check(&u.name, u.mechanism, Some(u.iterations), Some(&u.salt)) {
            Err((code, msg)) => fail(&mut results, &u.name, code, msg),
            Ok(hash) if u.salted_password.len() != hash.output_len() => fail(
                &mut results,
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
    changes.retain(|(user, ..)| results.iter().any(|r| r.user == *user && r.error_code == 0));
    let users: Vec<KStr> = changes.iter().map(|(u, ..)| u.clone()).collect();
    let resp = AlterUserScramCredentialsResponse { results, ..Default::default() };
    let job = super::reply_after(
        st,
        fx,
        req,
        ResponseBody::AlterUserScramCredentials(resp),
        changes.len(),
        Then::ScramCredentials(users),
    );
    for (part, (user, hash, cred)) in changes.into_iter().enumerate() {
        let value = cred.as_ref().map(ScramCredential::encode);
        st.credentials.set(&user, hash, cred);
        fx.storage(super::CmdOwner::Job { job, part }, Command::Put { key: scram::credential_key(&user, hash), value });
    }
}

/// A user whose credential could not be stored is answered with the store's error.
pub(crate) fn finish_alter(job: &mut ReplyJob) {
    let Then::ScramCredentials(users) = &job.then else { return };
    let ResponseBody::AlterUserScramCredentials(r) = &mut job.body else { return };
    for (user, err) in users.iter().zip(&job.results) {
        if let Some(e) = err
            && let Some(res) = r.results.iter_mut().find(|x| x.user == *user && x.error_code == 0)
        {
            res.error_code = e.error_code().0;
            res.error_message = Some(KStr::from_static("The credential could not be stored"));
        }
    }
}
