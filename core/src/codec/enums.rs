//! Small wire enums the JSON specs leave as plain integers: newtypes with named constants, so
//! handlers say `ConfigSource::TOPIC` instead of `1`. Unknown values survive and print their
//! number.

/// Declares an `i8` wire enum newtype with named constants and a `Debug` that prints them.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $konst:ident = $value:expr),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub i8);

        impl $name {
            $($(#[$vdoc])* pub const $konst: Self = Self($value);)+

            /// The constant's name, if the value is known.
            #[must_use]
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $(Self::$konst => Some(stringify!($konst)),)+
                    _ => None,
                }
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }
    };
}

wire_enum! {
    /// The type of a config resource (DescribeConfigs, AlterConfigs,
    /// IncrementalAlterConfigs), as Kafka's `ConfigResource.Type`.
    ConfigResourceType {
        /// Not known.
        UNKNOWN = 0,
        /// A topic.
        TOPIC = 2,
        /// A broker.
        BROKER = 4,
        /// A broker's loggers.
        BROKER_LOGGER = 8,
        /// A client metrics subscription.
        CLIENT_METRICS = 16,
        /// A consumer group.
        GROUP = 32,
    }
}

wire_enum! {
    /// Where a config's value comes from (DescribeConfigs v1+).
    ConfigSource {
        /// Not known.
        UNKNOWN = 0,
        /// Set on the topic.
        TOPIC = 1,
        /// Set dynamically on this broker.
        DYNAMIC_BROKER = 2,
        /// Set dynamically as every broker's default.
        DYNAMIC_DEFAULT_BROKER = 3,
        /// Set in the broker's configuration at start.
        STATIC_BROKER = 4,
        /// The built-in default.
        DEFAULT = 5,
        /// A broker logger's level.
        DYNAMIC_BROKER_LOGGER = 6,
        /// A client metrics setting.
        CLIENT_METRICS = 7,
        /// Set on the group.
        GROUP = 8,
    }
}

wire_enum! {
    /// An IncrementalAlterConfigs operation.
    AlterConfigOp {
        /// Set the value.
        SET = 0,
        /// Remove the override (back to the default).
        DELETE = 1,
        /// Add items to a list.
        APPEND = 2,
        /// Remove items from a list.
        SUBTRACT = 3,
    }
}

#[cfg(test)]
mod tests {
    use super::{AlterConfigOp, ConfigSource};

    #[test]
    fn known_values_print_their_name_and_unknown_ones_their_number() {
        assert_eq!(format!("{:?}", ConfigSource(5)), "DEFAULT");
        assert_eq!(format!("{:?}", AlterConfigOp(9)), "AlterConfigOp(9)");
    }
}
