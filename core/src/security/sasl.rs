//! The SASL exchange of one connection.
