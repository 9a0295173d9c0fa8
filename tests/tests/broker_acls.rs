//! CreateAcls, DescribeAcls and DeleteAcls through the broker, in virtual time: refused without
//! the authorizer (SECURITY_DISABLED) and without ALTER/DESCRIBE on the cluster, Kafka's checks
//! of a binding, filters (ANY, MATCH, LITERAL, PREFIXED), bindings stored and recovered, and
//! changes in force for the next request. The per-API checks are in the broker_acls_* files.

use kelp_core::ConnId;
use kelp_core::codec::ErrorCode;
use kelp_core::codec::KStr;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::create_acls::{AclCreation, CreateAclsRequest};
use kelp_core::codec::generated::delete_acls::{DeleteAclsFilter, DeleteAclsRequest};
use kelp_core::codec::generated::describe_acls::DescribeAclsRequest;
use kelp_core::security::acl::{Operation, PatternType, Permission, ResourceType};
use kelp_tests::acls::{acl_config, as_user, grant};
use kelp_tests::expect_body;
use kelp_tests::harness::{Harness, test_config};

fn creation(
    rt: ResourceType,
    name: &str,
    pattern: PatternType,
    principal: &str,
    op: Operation,
    perm: Permission,
) -> AclCreation {
    AclCreation {
        resource_type: rt.0,
        resource_name: KStr::from(name),
        resource_pattern_type: pattern.0,
        principal: KStr::from(principal),
        host: KStr::from("*"),
        operation: op.0,
        permission_type: perm.0,
        ..Default::default()
    }
}

fn create(h: &mut Harness, c: ConnId, creations: Vec<AclCreation>) -> Vec<i16> {
    let r = expect_body!(
        h.call(c, RequestBody::CreateAcls(CreateAclsRequest { creations, ..Default::default() }), 3),
        CreateAcls
    );
    r.results.iter().map(|x| x.error_code).collect()
}

/// One described binding: (type, name, pattern, principal, operation, permission).
type Row = (i8, String, i8, String, i8, i8);

/// DescribeAcls with a filter on type, name and pattern: the error and the bindings.
fn describe(h: &mut Harness, c: ConnId, rt: ResourceType, name: Option<&str>, pattern: PatternType) -> (i16, Vec<Row>) {
    let req = DescribeAclsRequest {
        resource_type_filter: rt.0,
        resource_name_filter: name.map(KStr::from),
        pattern_type_filter: pattern.0,
        principal_filter: None,
        host_filter: None,
        operation: Operation::ANY.0,
        permission_type: Permission::ANY.0,
        ..Default::default()
    };
    let r = expect_body!(h.call(c, RequestBody::DescribeAcls(req), 3), DescribeAcls);
    let rows = r
        .resources
        .iter()
        .flat_map(|res| {
            res.acls.iter().map(move |a| {
                (
                    res.resource_type,
                    res.resource_name.to_string(),
                    res.pattern_type,
                    a.principal.to_string(),
                    a.operation,
                    a.permission_type,
                )
            })
        })
        .collect();
    (r.error_code, rows)
}

#[test]
fn without_the_authorizer_acl_requests_are_refused_as_security_disabled() {
    let mut h = Harness::new(test_config());
    let c = h.connect();
    let codes = create(
        &mut h,
        c,
        vec![creation(ResourceType::TOPIC, "t", PatternType::LITERAL, "User:a", Operation::READ, Permission::ALLOW)],
    );
    assert_eq!(codes, [ErrorCode::SECURITY_DISABLED.0]);
    assert_eq!(describe(&mut h, c, ResourceType::ANY, None, PatternType::ANY).0, ErrorCode::SECURITY_DISABLED.0);
    let req = DeleteAclsRequest {
        filters: vec![DeleteAclsFilter {
            resource_type_filter: 1,
            pattern_type_filter: 1,
            operation: 1,
            permission_type: 1,
            ..Default::default()
        }],
        ..Default::default()
    };
    let r = expect_body!(h.call(c, RequestBody::DeleteAcls(req), 3), DeleteAcls);
    assert_eq!(r.filter_results[0].error_code, ErrorCode::SECURITY_DISABLED.0);
}

#[test]
fn managing_acls_takes_alter_or_describe_on_the_cluster() {
    let mut h = Harness::new(acl_config());
    let bob = as_user(&mut h, "bob");
    let t = creation(ResourceType::TOPIC, "t", PatternType::LITERAL, "User:bob", Operation::ALL, Permission::ALLOW);
    assert_eq!(create(&mut h, bob, vec![t.clone()]), [ErrorCode::CLUSTER_AUTHORIZATION_FAILED.0]);
    assert_eq!(
        describe(&mut h, bob, ResourceType::ANY, None, PatternType::ANY).0,
        ErrorCode::CLUSTER_AUTHORIZATION_FAILED.0
    );
    // DESCRIBE on the cluster lets bob read the bindings, not change them; ALTER does both.
    grant(
        &mut h,
        &[(
            ResourceType::CLUSTER,
            "kafka-cluster",
            PatternType::LITERAL,
            "User:bob",
            Operation::DESCRIBE,
            Permission::ALLOW,
        )],
    );
    assert_eq!(describe(&mut h, bob, ResourceType::ANY, None, PatternType::ANY).1.len(), 1);
    assert_eq!(create(&mut h, bob, vec![t.clone()]), [ErrorCode::CLUSTER_AUTHORIZATION_FAILED.0]);
    grant(
        &mut h,
        &[(
            ResourceType::CLUSTER,
            "kafka-cluster",
            PatternType::LITERAL,
            "User:bob",
            Operation::ALTER,
            Permission::ALLOW,
        )],
    );
    assert_eq!(create(&mut h, bob, vec![t]), [0]);
}

#[test]
fn bindings_are_checked_filtered_deleted_and_survive_a_restart() {
    let mut h = Harness::new(acl_config());
    let admin = as_user(&mut h, "admin");
    let (t, g) = (ResourceType::TOPIC, ResourceType::GROUP);
    let (lit, pre) = (PatternType::LITERAL, PatternType::PREFIXED);
    let (allow, deny) = (Permission::ALLOW, Permission::DENY);
    let codes = create(
        &mut h,
        admin,
        vec![
            creation(t, "orders", lit, "User:alice", Operation::READ, allow),
            creation(t, "ord", pre, "User:bob", Operation::WRITE, allow),
            creation(t, "*", lit, "User:*", Operation::DESCRIBE, allow),
            creation(g, "app", lit, "User:alice", Operation::READ, deny),
            creation(t, "orders", lit, "User:alice", Operation::READ, allow),
            // Refused: a filter type, the ANY operation, a bad principal, the cluster's name,
            // the MATCH pattern, an empty name.
            creation(ResourceType::ANY, "x", lit, "User:a", Operation::READ, allow),
            creation(t, "x", lit, "User:a", Operation::ANY, allow),
            creation(t, "x", lit, "alice", Operation::READ, allow),
            creation(ResourceType::CLUSTER, "other", lit, "User:a", Operation::ALTER, allow),
            creation(t, "x", PatternType::MATCH, "User:a", Operation::READ, allow),
            creation(t, "", lit, "User:a", Operation::READ, allow),
        ],
    );
    let bad = ErrorCode::INVALID_REQUEST.0;
    assert_eq!(codes, [0, 0, 0, 0, 0, bad, bad, bad, bad, bad, bad], "a binding asked for twice is one binding");
    let (err, all) = describe(&mut h, admin, ResourceType::ANY, None, PatternType::ANY);
    assert_eq!((err, all.len()), (0, 4));
    // MATCH: what applies to the topic "orders": its literal, the wildcard, the prefix.
    let (_, matching) = describe(&mut h, admin, t, Some("orders"), PatternType::MATCH);
    let names: Vec<&str> = matching.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(names, ["*", "ord", "orders"]);
    let (_, prefixed) = describe(&mut h, admin, t, None, pre);
    assert_eq!(prefixed, [(t.0, "ord".to_string(), pre.0, "User:bob".to_string(), Operation::WRITE.0, allow.0)]);
    // A bad filter is refused.
    assert_eq!(describe(&mut h, admin, ResourceType(0), None, PatternType::ANY).0, bad);
    // Delete what a filter selects: everything on topics for User:alice.
    let req = DeleteAclsRequest {
        filters: vec![DeleteAclsFilter {
            resource_type_filter: t.0,
            pattern_type_filter: PatternType::ANY.0,
            resource_name_filter: None,
            principal_filter: Some(KStr::from("User:alice")),
            host_filter: None,
            operation: Operation::ANY.0,
            permission_type: Permission::ANY.0,
            ..Default::default()
        }],
        ..Default::default()
    };
    let r = expect_body!(h.call(admin, RequestBody::DeleteAcls(req), 3), DeleteAcls);
    assert_eq!(r.filter_results[0].matching_acls.len(), 1);
    assert_eq!(r.filter_results[0].matching_acls[0].resource_name.as_str(), "orders");
    // A restart recovers the three left.
    let mut h = h.restart(acl_config());
    let admin = as_user(&mut h, "admin");
    let (_, after) = describe(&mut h, admin, ResourceType::ANY, None, PatternType::ANY);
    let names: Vec<&str> = after.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(names, ["*", "ord", "app"]);
}
