//! Authorization: ACL bindings as Kafka has them, and the decision whether a principal may
//! perform an operation on a resource, with the rules of Kafka's `StandardAuthorizer`.
//!
//! A binding allows or denies a principal (`User:alice`, or `User:*` for everyone) an
//! operation from a host (or `*`) on resources: one by name (LITERAL, where the name `*` means
//! every resource of the type) or every one whose name starts with a prefix (PREFIXED).
//! Deciding:
//! - super users may do everything;
//! - a matching DENY for the operation (or ALL) wins over everything else;
//! - a matching ALLOW for the operation (or ALL) allows it, and so does one for an operation
//!   that implies it: READ, WRITE, DELETE and ALTER imply DESCRIBE, ALTER_CONFIGS implies
//!   DESCRIBE_CONFIGS;
//! - when no binding at all names the resource, `allow.everyone.if.no.acl.found` decides
//!   (default: no).

use bytes::{BufMut, Bytes, BytesMut};
use hashbrown::HashMap;

use crate::codec::KStr;

/// Kafka's resource types (`ResourceType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType(pub i8);

impl ResourceType {
    /// Matches any type (filters only).
    pub const ANY: Self = Self(1);
    /// A topic.
    pub const TOPIC: Self = Self(2);
    /// A consumer group.
    pub const GROUP: Self = Self(3);
    /// The cluster (named `kafka-cluster`).
    pub const CLUSTER: Self = Self(4);
    /// A transactional id.
    pub const TRANSACTIONAL_ID: Self = Self(5);
    /// A delegation token.
    pub const DELEGATION_TOKEN: Self = Self(6);
    /// A user (for delegation tokens).
    pub const USER: Self = Self(7);

    /// Whether bindings may name this type.
    #[must_use]
    pub const fn is_concrete(self) -> bool {
        self.0 >= 2 && self.0 <= 7
    }
}

/// The cluster resource's only name.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The literal name, principal and host that stand for every one.
pub const WILDCARD: &str = "*";

/// How a binding's resource name matches (`PatternType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PatternType(pub i8);

impl PatternType {
    /// Any pattern (filters only).
    pub const ANY: Self = Self(1);
    /// Whatever matches the name: literal, wildcard or prefix (filters only).
    pub const MATCH: Self = Self(2);
    /// The exact name (`*`: every name).
    pub const LITERAL: Self = Self(3);
    /// Every name starting with it.
    pub const PREFIXED: Self = Self(4);
}

/// An operation (`AclOperation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Operation(pub i8);

impl Operation {
    /// Any operation (filters only).
    pub const ANY: Self = Self(1);
    /// Every operation.
    pub const ALL: Self = Self(2);
    /// Read.
    pub const READ: Self = Self(3);
    /// Write.
    pub const WRITE: Self = Self(4);
    /// Create.
    pub const CREATE: Self = Self(5);
    /// Delete.
    pub const DELETE: Self = Self(6);
    /// Alter.
    pub const ALTER: Self = Self(7);
    /// Describe.
    pub const DESCRIBE: Self = Self(8);
    /// Cluster actions (inter-broker).
    pub const CLUSTER_ACTION: Self = Self(9);
    /// Describe configs.
    pub const DESCRIBE_CONFIGS: Self = Self(10);
    /// Alter configs.
    pub const ALTER_CONFIGS: Self = Self(11);
    /// Idempotent produce.
    pub const IDEMPOTENT_WRITE: Self = Self(12);
    /// Create delegation tokens.
    pub const CREATE_TOKENS: Self = Self(13);
    /// Describe delegation tokens.
    pub const DESCRIBE_TOKENS: Self = Self(14);
    /// Two-phase commit (KIP-939).
    pub const TWO_PHASE_COMMIT: Self = Self(15);

    /// Whether bindings may name this operation.
    #[must_use]
    pub const fn is_concrete(self) -> bool {
        self.0 >= 2 && self.0 <= 15
    }

    /// The operations on `rtype` that `authorized_operations` reports (Kafka's lists).
    #[must_use]
    pub fn for_resource(rtype: ResourceType) -> &'static [Self] {
        match rtype {
            ResourceType::TOPIC => &[
                Self::READ,
                Self::WRITE,
                Self::CREATE,
                Self::DELETE,
                Self::ALTER,
                Self::DESCRIBE,
                Self::DESCRIBE_CONFIGS,
                Self::ALTER_CONFIGS,
            ],
            ResourceType::GROUP => {
                &[Self::READ, Self::DELETE, Self::DESCRIBE, Self::DESCRIBE_CONFIGS, Self::ALTER_CONFIGS]
            }
            ResourceType::CLUSTER => &[
                Self::CREATE,
                Self::CLUSTER_ACTION,
                Self::DESCRIBE_CONFIGS,
                Self::ALTER_CONFIGS,
                Self::IDEMPOTENT_WRITE,
                Self::ALTER,
                Self::DESCRIBE,
            ],
            ResourceType::TRANSACTIONAL_ID => &[Self::DESCRIBE, Self::WRITE, Self::TWO_PHASE_COMMIT],
            _ => &[],
        }
    }

    /// The `authorized_operations` bit set of `ops`.
    #[must_use]
    pub fn bits(ops: impl IntoIterator<Item = Self>) -> i32 {
        ops.into_iter().fold(0, |acc, op| acc | (1 << op.0))
    }
}

/// ALLOW or DENY (`AclPermissionType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission(pub i8);

impl Permission {
    /// Any permission (filters only).
    pub const ANY: Self = Self(1);
    /// Deny.
    pub const DENY: Self = Self(2);
    /// Allow.
    pub const ALLOW: Self = Self(3);
}

/// One ACL binding.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Acl {
    /// The resource type.
    pub resource_type: ResourceType,
    /// The resource name (or prefix).
    pub name: KStr,
    /// LITERAL or PREFIXED.
    pub pattern: PatternType,
    /// `User:name`, or `User:*`.
    pub principal: KStr,
    /// A host address, or `*`.
    pub host: KStr,
    /// The operation (ALL for every one).
    pub operation: Operation,
    /// ALLOW or DENY.
    pub permission: Permission,
}

/// What a filter (DescribeAcls, DeleteAcls) selects: `None` strings match anything.
#[derive(Clone, Debug, Default)]
pub struct AclFilter {
    /// A type, or ANY.
    pub resource_type: Option<ResourceType>,
    /// A name, or any.
    pub name: Option<KStr>,
    /// ANY, MATCH, LITERAL or PREFIXED.
    pub pattern: Option<PatternType>,
    /// A principal, or any.
    pub principal: Option<KStr>,
    /// A host, or any.
    pub host: Option<KStr>,
    /// An operation, or ANY.
    pub operation: Option<Operation>,
    /// A permission, or ANY.
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// Whether `acl` is selected. A MATCH pattern selects the bindings that apply to the
    /// named resource: its literal binding, the wildcard, and prefixes of its name.
    #[must_use]
    pub fn matches(&self, acl: &Acl) -> bool {
        let rt = self.resource_type.is_none_or(|t| t == ResourceType::ANY || t == acl.resource_type);
        let name_and_pattern = match (self.pattern.unwrap_or(PatternType::ANY), &self.name) {
            (PatternType::MATCH, Some(n)) => match acl.pattern {
                PatternType::LITERAL => acl.name == *n || acl.name.as_str() == WILDCARD,
                PatternType::PREFIXED => n.starts_with(acl.name.as_str()),
                _ => false,
            },
            (PatternType::ANY | PatternType::MATCH, name) => name.as_ref().is_none_or(|n| *n == acl.name),
            (p, name) => p == acl.pattern && name.as_ref().is_none_or(|n| *n == acl.name),
        };
        rt && name_and_pattern
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && self.operation.is_none_or(|o| o == Operation::ANY || o == acl.operation)
            && self.permission.is_none_or(|p| p == Permission::ANY || p == acl.permission)
    }
}

/// A peer's address as ACL hosts name it, the way Kafka's broker writes it (Java's
/// `getHostAddress`): an IPv4 address mapped into IPv6 (a client of a dual-stack listener) as
/// IPv4, and IPv6 in full, eight groups of hex without leading zeros (`0:0:0:0:0:0:0:1`).
#[must_use]
pub fn host_of(ip: std::net::IpAddr) -> KStr {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => KStr::from(v4.to_string()),
        std::net::IpAddr::V6(v6) => {
            let groups: Vec<String> = v6.segments().iter().map(|g| format!("{g:x}")).collect();
            KStr::from(groups.join(":"))
        }
    }
}

/// Longest name, principal or host a binding may have (its store key holds 2-byte lengths).
pub const MAX_FIELD: usize = u16::MAX as usize;

/// Where bindings are stored: this, then the binding's encoding (the value is empty).
pub const ACL_PREFIX: &[u8] = b"kelp/acl/";

impl Acl {
    /// The binding's store key: the prefix, then each field (strings with a 2-byte length).
    #[must_use]
    pub fn key(&self) -> Bytes {
        let mut b =
            BytesMut::with_capacity(ACL_PREFIX.len() + 16 + self.name.len() + self.principal.len() + self.host.len());
        b.put_slice(ACL_PREFIX);
        b.put_i8(self.resource_type.0);
        b.put_i8(self.pattern.0);
        b.put_i8(self.operation.0);
        b.put_i8(self.permission.0);
        for s in [&self.name, &self.principal, &self.host] {
            b.put_u16(u16::try_from(s.len()).unwrap_or(u16::MAX));
            b.put_slice(&s.as_bytes()[..s.len().min(usize::from(u16::MAX))]);
        }
        b.freeze()
    }

    /// The binding a store key names, if it is one.
    #[must_use]
    pub fn from_key(key: &[u8]) -> Option<Self> {
        let rest = key.strip_prefix(ACL_PREFIX)?;
        let (fixed, mut rest) = rest.split_first_chunk::<4>()?;
        let mut strings: [KStr; 3] = Default::default();
        for s in &mut strings {
            let (len, tail) = rest.split_first_chunk::<2>()?;
            let len = usize::from(u16::from_be_bytes(*len));
            *s = KStr::from(core::str::from_utf8(tail.get(..len)?).ok()?.to_string());
            rest = &tail[len..];
        }
        let [name, principal, host] = strings;
        let [rt, pattern, op, perm] = fixed.map(|b| b as i8);
        Some(Self {
            resource_type: ResourceType(rt),
            name,
            pattern: PatternType(pattern),
            principal,
            host,
            operation: Operation(op),
            permission: Permission(perm),
        })
    }
}

/// Every binding, indexed by resource type.
#[derive(Debug, Default)]
pub struct Acls {
    by_type: HashMap<ResourceType, Vec<Acl>>,
    count: usize,
}

impl Acls {
    /// How many bindings there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds `acl`; false if it was there.
    pub fn add(&mut self, acl: Acl) -> bool {
        let list = self.by_type.entry(acl.resource_type).or_default();
        if list.contains(&acl) {
            return false;
        }
        list.push(acl);
        self.count += 1;
        true
    }

    /// Removes `acl`; false if it was not there.
    pub fn remove(&mut self, acl: &Acl) -> bool {
        let Some(list) = self.by_type.get_mut(&acl.resource_type) else { return false };
        let before = list.len();
        list.retain(|a| a != acl);
        let removed = before != list.len();
        self.count -= usize::from(removed);
        removed
    }

    /// The bindings `filter` selects, sorted.
    #[must_use]
    pub fn matching(&self, filter: &AclFilter) -> Vec<Acl> {
        let mut v: Vec<Acl> = self.by_type.values().flatten().filter(|a| filter.matches(a)).cloned().collect();
        v.sort();
        v
    }

    /// Loads what the store reported at start-up.
    pub fn recover(&mut self, values: &[(Bytes, Bytes)]) {
        for (k, _) in values {
            if let Some(acl) = Acl::from_key(k) {
                self.add(acl);
            }
        }
    }

    /// Whether `principal` from `host` may perform `op` on the resource `rtype`/`name`, by
    /// the bindings alone (no super users); `if_none` when no binding names the resource.
    #[must_use]
    pub fn allows(
        &self,
        principal: &str,
        host: &str,
        op: Operation,
        rtype: ResourceType,
        name: &str,
        if_none: bool,
    ) -> bool {
        let Some(list) = self.by_type.get(&rtype) else { return if_none };
        let mut any = false;
        let mut allowed = false;
        for a in list {
            let names = match a.pattern {
                PatternType::LITERAL => a.name.as_str() == name || a.name.as_str() == WILDCARD,
                PatternType::PREFIXED => name.starts_with(a.name.as_str()),
                _ => false,
            };
            if !names {
                continue;
            }
            any = true;
            let who = a.principal.as_str() == principal || a.principal.as_str() == "User:*";
            let from = a.host.as_str() == host || a.host.as_str() == WILDCARD;
            if !(who && from) {
                continue;
            }
            if a.permission == Permission::DENY {
                if a.operation == op || a.operation == Operation::ALL {
                    return false;
                }
            } else if a.permission == Permission::ALLOW && implies(a.operation, op) {
                allowed = true;
            }
        }
        if any { allowed } else { if_none }
    }
}

/// Whether an ALLOW for `granted` allows `wanted`.
fn implies(granted: Operation, wanted: Operation) -> bool {
    granted == wanted
        || granted == Operation::ALL
        || (wanted == Operation::DESCRIBE
            && matches!(granted, Operation::READ | Operation::WRITE | Operation::DELETE | Operation::ALTER))
        || (wanted == Operation::DESCRIBE_CONFIGS && granted == Operation::ALTER_CONFIGS)
}

/// The authorizer: whether it is on, who the super users are, and the bindings.
#[derive(Debug, Default)]
pub struct Authorizer {
    /// Off: everyone may do everything (Kafka without `authorizer.class.name`).
    pub enabled: bool,
    /// Principals that may do everything (Kafka's `super.users`).
    pub super_users: Vec<KStr>,
    /// Whether a resource no binding names is open to all (Kafka's
    /// `allow.everyone.if.no.acl.found`).
    pub allow_if_no_acl: bool,
    /// The bindings.
    pub acls: Acls,
}

impl Authorizer {
    /// Whether `principal` from `host` may perform `op` on `rtype`/`name`.
    #[must_use]
    pub fn authorize(&self, principal: &str, host: &str, op: Operation, rtype: ResourceType, name: &str) -> bool {
        !self.enabled
            || principal == super::INTERNAL
            || self.super_users.iter().any(|s| s.as_str() == principal)
            || self.acls.allows(principal, host, op, rtype, name, self.allow_if_no_acl)
    }

    /// Whether `principal` from `host` may perform `op` on some resource of type `rtype`
    /// (Kafka's `authorizeByResourceType`): some ALLOW binding grants it, and no DENY for it
    /// covers every name of the type (the literal `*` or the empty prefix).
    #[must_use]
    pub fn authorize_any(&self, principal: &str, host: &str, op: Operation, rtype: ResourceType) -> bool {
        if !self.enabled || principal == super::INTERNAL || self.super_users.iter().any(|s| s.as_str() == principal) {
            return true;
        }
        let Some(list) = self.acls.by_type.get(&rtype) else { return self.allow_if_no_acl };
        let applies = |a: &Acl| {
            (a.principal.as_str() == principal || a.principal.as_str() == "User:*")
                && (a.host.as_str() == host || a.host.as_str() == WILDCARD)
        };
        let denied_everywhere = list.iter().any(|a| {
            applies(a)
                && a.permission == Permission::DENY
                && (a.operation == op || a.operation == Operation::ALL)
                && ((a.pattern == PatternType::LITERAL && a.name.as_str() == WILDCARD)
                    || (a.pattern == PatternType::PREFIXED && a.name.is_empty()))
        });
        !denied_everywhere
            && list.iter().any(|a| applies(a) && a.permission == Permission::ALLOW && implies(a.operation, op))
    }

    /// The `authorized_operations` bits of `rtype`/`name` for `principal` from `host`.
    #[must_use]
    pub fn operations(&self, principal: &str, host: &str, rtype: ResourceType, name: &str) -> i32 {
        Operation::bits(
            Operation::for_resource(rtype)
                .iter()
                .copied()
                .filter(|op| self.authorize(principal, host, *op, rtype, name)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(rt: ResourceType, name: &str, pattern: PatternType, who: &str, op: Operation, perm: Permission) -> Acl {
        Acl {
            resource_type: rt,
            name: KStr::from(name),
            pattern,
            principal: KStr::from(who),
            host: KStr::from("*"),
            operation: op,
            permission: perm,
        }
    }

    #[test]
    fn deny_wins_prefixes_and_wildcards_match_and_operations_imply_describe() {
        let mut a = Authorizer { enabled: true, ..Default::default() };
        let t = ResourceType::TOPIC;
        a.acls.add(acl(t, "orders", PatternType::LITERAL, "User:alice", Operation::READ, Permission::ALLOW));
        a.acls.add(acl(t, "pay-", PatternType::PREFIXED, "User:alice", Operation::ALL, Permission::ALLOW));
        a.acls.add(acl(t, "pay-secret", PatternType::LITERAL, "User:alice", Operation::WRITE, Permission::DENY));
        a.acls.add(acl(t, "*", PatternType::LITERAL, "User:*", Operation::DESCRIBE, Permission::ALLOW));
        let can = |a: &Authorizer, who: &str, op: Operation, name: &str| a.authorize(who, "10.0.0.1", op, t, name);
        assert!(can(&a, "User:alice", Operation::READ, "orders"));
        assert!(can(&a, "User:alice", Operation::DESCRIBE, "orders"), "READ implies DESCRIBE");
        assert!(!can(&a, "User:alice", Operation::WRITE, "orders"));
        assert!(can(&a, "User:alice", Operation::WRITE, "pay-in"), "prefix with ALL");
        assert!(!can(&a, "User:alice", Operation::WRITE, "pay-secret"), "DENY wins");
        assert!(can(&a, "User:alice", Operation::READ, "pay-secret"));
        assert!(can(&a, "User:bob", Operation::DESCRIBE, "anything"), "wildcard name and principal");
        assert!(!can(&a, "User:bob", Operation::READ, "anything"));
        // No binding names a group: denied unless allow.everyone.if.no.acl.found.
        assert!(!a.authorize("User:bob", "h", Operation::READ, ResourceType::GROUP, "g"));
        a.allow_if_no_acl = true;
        assert!(a.authorize("User:bob", "h", Operation::READ, ResourceType::GROUP, "g"));
        assert!(!can(&a, "User:bob", Operation::READ, "orders"), "a named resource does not fall back");
        a.super_users.push(KStr::from("User:root"));
        assert!(can(&a, "User:root", Operation::WRITE, "pay-secret"));
        assert!(a.authorize(crate::security::INTERNAL, "h", Operation::WRITE, t, "pay-secret"));
        a.enabled = false;
        assert!(can(&a, "User:bob", Operation::WRITE, "pay-secret"), "no authorizer, no checks");
    }

    #[test]
    fn hosts_are_written_as_kafka_writes_them() {
        let h = |s: &str| host_of(s.parse().expect("an address")).to_string();
        assert_eq!(h("10.0.0.1"), "10.0.0.1");
        assert_eq!(h("::ffff:10.0.0.1"), "10.0.0.1", "an IPv4 client of a dual-stack listener");
        assert_eq!(h("::1"), "0:0:0:0:0:0:0:1");
        assert_eq!(h("fe80::1:abcd"), "fe80:0:0:0:0:0:1:abcd");
    }

    #[test]
    fn hosts_count_and_authorized_operations_are_bits() {
        let mut a = Authorizer { enabled: true, ..Default::default() };
        let mut x =
            acl(ResourceType::GROUP, "g", PatternType::LITERAL, "User:alice", Operation::READ, Permission::ALLOW);
        x.host = KStr::from("10.0.0.1");
        a.acls.add(x);
        assert!(a.authorize("User:alice", "10.0.0.1", Operation::READ, ResourceType::GROUP, "g"));
        assert!(!a.authorize("User:alice", "10.0.0.2", Operation::READ, ResourceType::GROUP, "g"));
        let bits = a.operations("User:alice", "10.0.0.1", ResourceType::GROUP, "g");
        assert_eq!(bits, (1 << 3) | (1 << 8), "READ and the DESCRIBE it implies");
    }

    #[test]
    fn bindings_round_trip_through_store_keys_and_filters_select_them() {
        let a = acl(ResourceType::TOPIC, "pay-", PatternType::PREFIXED, "User:a", Operation::WRITE, Permission::ALLOW);
        assert_eq!(Acl::from_key(&a.key()), Some(a.clone()));
        assert_eq!(Acl::from_key(b"kelp/acl/\x02\x03"), None);
        let mut acls = Acls::default();
        assert!(acls.add(a.clone()) && !acls.add(a.clone()));
        let lit = acl(ResourceType::TOPIC, "pay-in", PatternType::LITERAL, "User:b", Operation::READ, Permission::DENY);
        acls.add(lit.clone());
        let by = |f: AclFilter| acls.matching(&f);
        assert_eq!(by(AclFilter::default()).len(), 2);
        let matching =
            AclFilter { name: Some(KStr::from("pay-in")), pattern: Some(PatternType::MATCH), ..Default::default() };
        assert_eq!(by(matching).len(), 2, "the literal and the prefix that covers it");
        let literal =
            AclFilter { name: Some(KStr::from("pay-in")), pattern: Some(PatternType::LITERAL), ..Default::default() };
        assert_eq!(by(literal), std::slice::from_ref(&lit));
        assert_eq!(
            by(AclFilter { permission: Some(Permission::DENY), ..Default::default() }),
            std::slice::from_ref(&lit)
        );
        assert!(acls.remove(&lit) && !acls.remove(&lit));
        assert_eq!(acls.len(), 1);
    }
}
