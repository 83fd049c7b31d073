//! How the domain's values look on the wire, for the OpenAPI document. Types whose serde form is derived derive
//! their schema beside it (`utoipa::ToSchema`); the values built by parsing (ids, bounded counts, names, instants)
//! are described here by the same rules their parsers enforce, so the document and the parser cannot be read apart.
//! `utoipa` is plain data with no web framework in it, which keeps this module free of I/O like the rest of `domain`.

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};

/// An integer from `min` to `max`.
pub fn integer(min: i64, max: i64, description: &str) -> RefOr<Schema> {
    let format = if i32::try_from(max).is_ok() { KnownFormat::Int32 } else { KnownFormat::Int64 };
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(format)))
        .minimum(Some(min))
        .maximum(Some(max))
        .description(Some(description))
        .into()
}

/// A string matching `pattern`, of `min` to `max` characters.
pub fn text(pattern: Option<&str>, min: usize, max: usize, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(pattern)
        .min_length(Some(min))
        .max_length(Some(max))
        .description(Some(description))
        .into()
}

/// A string in a known format (`date-time`, `uuid`).
pub fn formatted(format: KnownFormat, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(format)))
        .description(Some(description))
        .into()
}

/// No control character (`char::is_control`: C0, DEL and C1), as an ECMA-262 pattern.
pub const NO_CONTROL: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]*$";
