//! CIM-XML (DSP0201) codec: a bounded XML tree reader (`dom`), the request decoder (`decode`)
//! and the response encoder (`encode`).
//!
//! Invariant: nothing here expands entities beyond the five predefined ones and character
//! references; documents with a DTD are refused.

pub mod decode;
pub(crate) mod dom;
pub mod encode;
