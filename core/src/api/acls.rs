//! CreateAcls, DescribeAcls and DeleteAcls: the ACL bindings, as `kafka-acls` and the Admin
//! client manage them. Creations and deletions are stored, then take effect (the next request
//! is checked against them), then answered. Without the authorizer they are refused with
//! SECURITY_DISABLED, as Kafka refuses them without one.

use hashbrown::HashSet;

use super::{CmdOwner, Effects, ReplyJob, Then};
use crate::codec::generated::ResponseBody;
use crate::codec::generated::create_acls::{AclCreationResult, CreateAclsRequest, CreateAclsResponse};
use crate::codec::generated::delete_acls::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl, DeleteAclsRequest, DeleteAclsResponse,
};
use crate::codec::generated::describe_acls::{
    AclDescription, DescribeAclsRequest, DescribeAclsResource, DescribeAclsResponse,
};
use crate::codec::{ErrorCode, KStr};
use crate::io::Command;
use crate::request::Req;
use crate::security::acl::{Acl, AclFilter, CLUSTER_NAME, Operation, PatternType, Permission, ResourceType};
use crate::state::State;

/// Most bindings kept: a bound on the state a client with ALTER on the cluster can grow.
pub const MAX_ACLS: usize = 100_000;

/// Why a refusal: the error and its message.
type Refusal = (ErrorCode, String);

fn refused_by_authorizer(st: &State, req: &Req, op: Operation) -> Option<Refusal> {
    if !st.authz.enabled {
        return Some((ErrorCode::SECURITY_DISABLED, "No Authorizer is configured.".into()));
    }
    if !st.allowed(req, op, ResourceType::CLUSTER, CLUSTER_NAME) {
        return Some((ErrorCode::CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed.".into()));
    }
    None
}

/// A principal as ACLs name it: `Type:name` with a non-empty type and name (`User:*` allowed).
fn valid_principal(p: &str) -> bool {
    p.split_once(':').is_some_and(|(t, n)| !t.is_empty() && !n.is_empty())
}

/// The binding a creation asks for, or why it is refused (Kafka's checks).
fn binding(c: &crate::codec::generated::create_acls::AclCreation) -> Result<Acl, Refusal> {
    let bad = |m: &str| Err((ErrorCode::INVALID_REQUEST, m.to_string()));
    let rt = ResourceType(c.resource_type);
    if !rt.is_concrete() {
        return bad("Invalid resource type");
    }
    let pattern = PatternType(c.resource_pattern_type);
    if pattern != PatternType::LITERAL && pattern != PatternType::PREFIXED {
        return bad("Invalid pattern type: only LITERAL and PREFIXED bindings can be created");
    }
    if c.resource_name.is_empty() {
        return bad("Resource name must not be empty");
    }
    if rt == ResourceType::CLUSTER && (pattern != PatternType::LITERAL || c.resource_name.as_str() != CLUSTER_NAME) {
        return bad("The only valid name for the CLUSTER resource is kafka-cluster");
    }
    if !Operation(c.operation).is_concrete() {
        return bad("Invalid operation");
    }
    if !matches!(Permission(c.permission_type), Permission::ALLOW | Permission::DENY) {
        return bad("Invalid permission type");
    }
    if !valid_principal(&c.principal) {
        return bad("Invalid principal: expected Type:name, such as User:alice or User:*");
    }
    if c.host.is_empty() {
        return bad("Invalid host: use * for every host");
    }
    if [&c.resource_name, &c.principal, &c.host].iter().any(|s| s.len() > crate::security::acl::MAX_FIELD) {
        return bad("Resource name, principal and host must each be at most 65535 bytes");
    }
    Ok(Acl {
        resource_type: rt,
        name: c.resource_name.clone(),
        pattern,
        principal: c.principal.clone(),
        host: c.host.clone(),
        operation: Operation(c.operation),
        permission: Permission(c.permission_type),
    })
}

pub(crate) fn create(st: &mut State, fx: &mut Effects, req: Req, m: &CreateAclsRequest) {
    let refusal = refused_by_authorizer(st, &req, Operation::ALTER);
    let mut results = Vec::with_capacity(m.creations.len());
    let mut adds: Vec<Acl> = Vec::new();
    // For each creation, the change that carries it out (a binding asked for twice is added
    // once).
    let mut rows: Vec<Option<usize>> = Vec::with_capacity(m.creations.len());
    for c in &m.creations {
        let outcome = match &refusal {
            Some(r) => Err(r.clone()),
            None => binding(c).and_then(|acl| {
                if st.authz.acls.len() + adds.len() >= MAX_ACLS {
                    Err((ErrorCode::POLICY_VIOLATION, format!("At most {MAX_ACLS} ACLs can be kept")))
                } else {
                    Ok(acl)
                }
            }),
        };
        let mut r = AclCreationResult::default();
        match outcome {
            Ok(acl) => match adds.iter().position(|a| *a == acl) {
                Some(i) => rows.push(Some(i)),
                None => {
                    rows.push(Some(adds.len()));
                    adds.push(acl);
                }
            },
            Err((code, msg)) => {
                r.error_code = code.0;
                r.error_message = Some(KStr::from(msg));
                rows.push(None);
            }
        }
        results.push(r);
    }
    let resp = CreateAclsResponse { results, ..Default::default() };
    let changes = AclChanges { changes: adds.into_iter().map(|a| (a, true)).collect(), rows };
    store(st, fx, req, ResponseBody::CreateAcls(resp), changes);
}

/// What a CreateAcls or DeleteAcls stores: bindings added (true) or removed, and for
/// CreateAcls, which change each creation maps to.
#[derive(Debug)]
pub(crate) struct AclChanges {
    changes: Vec<(Acl, bool)>,
    rows: Vec<Option<usize>>,
}

/// Stores each change (a binding added or removed) as one part of the reply's job.
fn store(st: &mut State, fx: &mut Effects, req: Req, body: ResponseBody, changes: AclChanges) {
    let puts: Vec<_> = changes.changes.iter().map(|(a, add)| (a.key(), *add)).collect();
    let job = super::reply_after(st, fx, req, body, puts.len(), Then::Acls(Box::new(changes)));
    for (part, (key, add)) in puts.into_iter().enumerate() {
        let value = add.then(|| bytes::Bytes::from_static(b"1"));
        fx.storage(CmdOwner::Job { job, part }, Command::Put { key, value });
    }
}

/// Stored changes take effect; a change that could not be stored is reported with the
/// store's error and does not.
pub(crate) fn finish(st: &mut State, job: &mut ReplyJob) {
    let Then::Acls(c) = &mut job.then else { return };
    let mut failed: Vec<(Acl, ErrorCode)> = Vec::new();
    let mut codes: Vec<Option<ErrorCode>> = Vec::with_capacity(c.changes.len());
    for ((acl, add), err) in c.changes.drain(..).zip(&job.results) {
        codes.push(err.map(|e| e.error_code()));
        match err {
            None if add => drop(st.authz.acls.add(acl)),
            None => drop(st.authz.acls.remove(&acl)),
            Some(e) => failed.push((acl, e.error_code())),
        }
    }
    if failed.is_empty() {
        return;
    }
    let msg = || Some(KStr::from_static("The ACL change could not be stored"));
    match &mut job.body {
        ResponseBody::CreateAcls(r) => {
            for (res, row) in r.results.iter_mut().zip(&c.rows) {
                if let Some(code) = row.and_then(|i| codes.get(i).copied().flatten()) {
                    res.error_code = code.0;
                    res.error_message = msg();
                }
            }
        }
        ResponseBody::DeleteAcls(r) => {
            for fr in &mut r.filter_results {
                for ma in &mut fr.matching_acls {
                    if let Some((_, code)) = failed.iter().find(|(a, _)| matches_row(a, ma)) {
                        ma.error_code = code.0;
                        ma.error_message = msg();
                    }
                }
            }
        }
        _ => {}
    }
}

fn matches_row(a: &Acl, m: &DeleteAclsMatchingAcl) -> bool {
    a.resource_type.0 == m.resource_type
        && a.name == m.resource_name
        && a.pattern.0 == m.pattern_type
        && a.principal == m.principal
        && a.host == m.host
        && a.operation.0 == m.operation
        && a.permission.0 == m.permission_type
}

/// A request's filter, checked as Kafka checks filters.
fn filter(
    rt: i8,
    name: Option<&KStr>,
    pattern: i8,
    principal: Option<&KStr>,
    host: Option<&KStr>,
    op: i8,
    perm: i8,
) -> Result<AclFilter, Refusal> {
    let bad = |m: &str| Err((ErrorCode::INVALID_REQUEST, m.to_string()));
    if !(1..=7).contains(&rt) {
        return bad("Invalid resource type filter");
    }
    if !(1..=4).contains(&pattern) {
        return bad("Invalid pattern type filter");
    }
    if !(1..=15).contains(&op) {
        return bad("Invalid operation filter");
    }
    if !(1..=3).contains(&perm) {
        return bad("Invalid permission type filter");
    }
    Ok(AclFilter {
        resource_type: Some(ResourceType(rt)),
        name: name.cloned(),
        pattern: Some(PatternType(pattern)),
        principal: principal.cloned(),
        host: host.cloned(),
        operation: Some(Operation(op)),
        permission: Some(Permission(perm)),
    })
}

pub(crate) fn describe(st: &State, fx: &mut Effects, req: Req, m: &DescribeAclsRequest) {
    let mut resp = DescribeAclsResponse::default();
    let result = refused_by_authorizer(st, &req, Operation::DESCRIBE).map_or_else(
        || {
            filter(
                m.resource_type_filter,
                m.resource_name_filter.as_ref(),
                m.pattern_type_filter,
                m.principal_filter.as_ref(),
                m.host_filter.as_ref(),
                m.operation,
                m.permission_type,
            )
        },
        Err,
    );
    match result {
        Err((code, msg)) => {
            resp.error_code = code.0;
            resp.error_message = Some(KStr::from(msg));
        }
        Ok(f) => {
            // Sorted by resource, so the bindings of one resource are adjacent.
            for acl in st.authz.acls.matching(&f) {
                let same = resp.resources.last().is_some_and(|r| {
                    r.resource_type == acl.resource_type.0
                        && r.resource_name == acl.name
                        && r.pattern_type == acl.pattern.0
                });
                if !same {
                    resp.resources.push(DescribeAclsResource {
                        resource_type: acl.resource_type.0,
                        resource_name: acl.name.clone(),
                        pattern_type: acl.pattern.0,
                        ..Default::default()
                    });
                }
                if let Some(r) = resp.resources.last_mut() {
                    r.acls.push(AclDescription {
                        principal: acl.principal,
                        host: acl.host,
                        operation: acl.operation.0,
                        permission_type: acl.permission.0,
                        ..Default::default()
                    });
                }
            }
        }
    }
    fx.respond(req, ResponseBody::DescribeAcls(resp));
}

pub(crate) fn delete(st: &mut State, fx: &mut Effects, req: Req, m: &DeleteAclsRequest) {
    let refusal = refused_by_authorizer(st, &req, Operation::ALTER);
    let mut resp = DeleteAclsResponse::default();
    let mut removes: Vec<Acl> = Vec::new();
    let mut seen: HashSet<Acl> = HashSet::new();
    for f in &m.filters {
        let mut fr = DeleteAclsFilterResult::default();
        let checked = refusal.clone().map_or_else(
            || {
                filter(
                    f.resource_type_filter,
                    f.resource_name_filter.as_ref(),
                    f.pattern_type_filter,
                    f.principal_filter.as_ref(),
                    f.host_filter.as_ref(),
                    f.operation,
                    f.permission_type,
                )
            },
            Err,
        );
        match checked {
            Err((code, msg)) => {
                fr.error_code = code.0;
                fr.error_message = Some(KStr::from(msg));
            }
            Ok(filter) => {
                for acl in st.authz.acls.matching(&filter) {
                    fr.matching_acls.push(DeleteAclsMatchingAcl {
                        resource_type: acl.resource_type.0,
                        resource_name: acl.name.clone(),
                        pattern_type: acl.pattern.0,
                        principal: acl.principal.clone(),
                        host: acl.host.clone(),
                        operation: acl.operation.0,
                        permission_type: acl.permission.0,
                        ..Default::default()
                    });
                    if seen.insert(acl.clone()) {
                        removes.push(acl);
                    }
                }
            }
        }
        resp.filter_results.push(fr);
    }
    let changes = AclChanges { changes: removes.into_iter().map(|a| (a, false)).collect(), rows: Vec::new() };
    store(st, fx, req, ResponseBody::DeleteAcls(resp), changes);
}
