//! What the ACL scenario tests share: a broker with the authorizer on and a super user,
//! connections as named principals (through an SSL listener, whose certificate subject is the
//! principal), and ACLs created with CreateAcls as the super user.

use kelp_core::codec::KStr;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::create_acls::{AclCreation, CreateAclsRequest};
use kelp_core::config::{Listener, SecurityProtocol};
use kelp_core::io::Origin;
use kelp_core::security::acl::{Operation, PatternType, Permission, ResourceType};
use kelp_core::{Config, ConnId};

use crate::expect_body;
use crate::harness::{Harness, test_config};

/// The super user's principal.
pub const ADMIN: &str = "User:admin";

/// [`test_config`] with the authorizer on, `User:admin` a super user, and a second listener
/// (SSL, number 1) through which [`as_user`] connects.
#[must_use]
pub fn acl_config() -> Config {
    let mut c = test_config();
    c.listeners.push(Listener {
        name: KStr::from("SSL"),
        protocol: SecurityProtocol::Ssl,
        host: KStr::from("127.0.0.1"),
        port: 9093,
    });
    c.authorizer = true;
    c.super_users = vec![KStr::from(ADMIN)];
    c
}

/// A connection whose principal is `User:<name>`.
pub fn as_user(h: &mut Harness, name: &str) -> ConnId {
    h.connect_via(Origin { listener: 1, tls_subject: Some(KStr::from(name)) })
}

/// A binding to create: (resource type, name, pattern, principal, operation, permission), host `*`.
pub type Grant<'a> = (ResourceType, &'a str, PatternType, &'a str, Operation, Permission);

/// CreateAcls' creations for `grants`.
#[must_use]
pub fn creations(grants: &[Grant<'_>]) -> Vec<AclCreation> {
    grants
        .iter()
        .map(|(rt, name, pattern, principal, op, perm)| AclCreation {
            resource_type: rt.0,
            resource_name: KStr::from(*name),
            resource_pattern_type: pattern.0,
            principal: KStr::from(*principal),
            host: KStr::from("*"),
            operation: op.0,
            permission_type: perm.0,
            ..Default::default()
        })
        .collect()
}

/// Creates `grants` as the super user on a fresh connection; each must succeed.
pub fn grant(h: &mut Harness, grants: &[Grant<'_>]) {
    let admin = as_user(h, "admin");
    let creations = creations(grants);
    let r = expect_body!(
        h.call(admin, RequestBody::CreateAcls(CreateAclsRequest { creations, ..Default::default() }), 3),
        CreateAcls
    );
    for (g, res) in grants.iter().zip(&r.results) {
        assert_eq!(res.error_code, 0, "CreateAcls {g:?}: {:?}", res.error_message);
    }
}

/// An ALLOW of `op` on the literal `name` for `principal` (`User:alice`).
#[must_use]
pub fn allow<'a>(rt: ResourceType, name: &'a str, principal: &'a str, op: Operation) -> Grant<'a> {
    (rt, name, PatternType::LITERAL, principal, op, Permission::ALLOW)
}
