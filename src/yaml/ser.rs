//! YAML straight from a `Serialize` value, without building a `serde_json::Value` first.
//!
//! The text is exactly what [`super::write_value`] prints for `serde_json::to_value(v)`: the same
//! key order, the same scalars (numbers go through `serde_json::Value`), the same empty `{}` and
//! `[]`, `null` for `None` and unit. What `to_value` would turn into something this serializer
//! does not mirror (non-string map keys, tuple and struct enum variants, 128-bit integers) is an
//! error, and the caller falls back to `to_value` + `write_value` (see [`write_serialize`]).

use std::fmt::{self, Write as _};

use serde::Serialize;
use serde::ser::{self, Impossible};
use serde_json::Value;

use super::{pad, write_scalar, write_str};

/// A value this serializer does not print itself (the caller falls back).
#[derive(Debug)]
pub struct Unsupported(String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Unsupported(msg.to_string())
    }
}

fn unsupported<T>(what: &str) -> Result<T, Unsupported> {
    Err(Unsupported(format!("{what} is not printed directly")))
}

/// Appends the YAML of `v` as a document body: the same text as
/// `write_value(out, &serde_json::to_value(v).unwrap_or(Value::Null), 0)`.
pub fn write_serialize<T: Serialize + ?Sized>(out: &mut String, v: &T) {
    let start = out.len();
    if v.serialize(Ser { out, ctx: Ctx::Top }).is_err() {
        out.truncate(start);
        let value = serde_json::to_value(v).unwrap_or(Value::Null);
        super::write_value(out, &value, 0);
    }
}

/// Appends `key:` and the YAML of `v` as the entry of a mapping whose entries sit at `indent`
/// (the caller writes what comes before the key: the indent, or `- `): the text the entry has in
/// the mapping [`write_serialize`] prints for a struct with that field.
pub fn write_field<T: Serialize + ?Sized>(out: &mut String, indent: usize, key: &str, v: &T) {
    write_str(out, key, indent, true);
    out.push(':');
    let start = out.len();
    if v.serialize(Ser {
        out,
        ctx: Ctx::Key(indent),
    })
    .is_err()
    {
        out.truncate(start);
        let value = serde_json::to_value(v).unwrap_or(Value::Null);
        super::write_child(out, &value, indent, false);
    }
}

/// Where a value is written.
#[derive(Clone, Copy)]
enum Ctx {
    /// A document body.
    Top,
    /// After `key:` in a mapping whose entries sit at this indent.
    Key(usize),
    /// After `-` in a sequence whose items sit at this indent.
    Item(usize),
}

struct Ser<'a> {
    out: &'a mut String,
    ctx: Ctx,
}

impl<'a> Ser<'a> {
    fn indent(&self) -> usize {
        match self.ctx {
            Ctx::Top => 0,
            Ctx::Key(i) | Ctx::Item(i) => i,
        }
    }

    fn prefix(&mut self) {
        if !matches!(self.ctx, Ctx::Top) {
            self.out.push(' ');
        }
    }

    fn raw(mut self, s: &str) -> Result<(), Unsupported> {
        self.prefix();
        self.out.push_str(s);
        self.out.push('\n');
        Ok(())
    }

    fn scalar(mut self, v: &Value) -> Result<(), Unsupported> {
        self.prefix();
        let indent = self.indent();
        write_scalar(self.out, v, indent);
        self.out.push('\n');
        Ok(())
    }

    fn display(mut self, v: impl fmt::Display) -> Result<(), Unsupported> {
        self.prefix();
        // Writing into a String cannot fail.
        let _ = write!(self.out, "{v}");
        self.out.push('\n');
        Ok(())
    }

    fn compound(self, map: bool) -> Compound<'a> {
        let indent = match (self.ctx, map) {
            (Ctx::Top, _) => 0,
            (Ctx::Key(i), true) => i + 2,
            // kubectl style: a list under a key sits at the key's indent.
            (Ctx::Key(i), false) => i,
            (Ctx::Item(i), _) => i + 2,
        };
        Compound {
            out: self.out,
            ctx: self.ctx,
            map,
            count: 0,
            indent,
        }
    }
}

/// A mapping or sequence being written; `{}` or `[]` when it ends with no element.
struct Compound<'a> {
    out: &'a mut String,
    ctx: Ctx,
    map: bool,
    count: usize,
    indent: usize,
}

impl Compound<'_> {
    fn element(&mut self) {
        if self.count == 0 {
            match self.ctx {
                Ctx::Top => {}
                Ctx::Key(_) => {
                    self.out.push('\n');
                    pad(self.out, self.indent);
                }
                Ctx::Item(_) => self.out.push(' '),
            }
        } else {
            pad(self.out, self.indent);
        }
        self.count += 1;
    }

    fn item<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Unsupported> {
        self.element();
        self.out.push('-');
        v.serialize(Ser {
            out: self.out,
            ctx: Ctx::Item(self.indent),
        })
    }

    /// A field or variant name. Those are mostly identifiers, plain unless short enough to
    /// spell a YAML word; `write_str` decides the others (and gives the same for these).
    fn key(&mut self, key: &'static str) {
        self.element();
        let b = key.as_bytes();
        if b.len() > 5 && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric) {
            self.out.push_str(key);
        } else {
            write_str(self.out, key, self.indent, true);
        }
        self.out.push(':');
    }

    fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Unsupported> {
        v.serialize(Ser {
            out: self.out,
            ctx: Ctx::Key(self.indent),
        })
    }

    fn finish(self) -> Result<(), Unsupported> {
        if self.count == 0 {
            if !matches!(self.ctx, Ctx::Top) {
                self.out.push(' ');
            }
            self.out.push_str(if self.map { "{}\n" } else { "[]\n" });
        }
        Ok(())
    }
}

impl<'a> ser::Serializer for Ser<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        self.raw(if v { "true" } else { "false" })
    }
    fn serialize_i8(self, v: i8) -> Result<(), Unsupported> {
        self.display(v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), Unsupported> {
        self.display(v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), Unsupported> {
        self.display(v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), Unsupported> {
        self.display(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Unsupported> {
        self.display(v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), Unsupported> {
        self.display(v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), Unsupported> {
        self.display(v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Unsupported> {
        self.display(v)
    }
    fn serialize_i128(self, _: i128) -> Result<(), Unsupported> {
        unsupported("i128")
    }
    fn serialize_u128(self, _: u128) -> Result<(), Unsupported> {
        unsupported("u128")
    }
    fn serialize_f32(self, v: f32) -> Result<(), Unsupported> {
        self.scalar(&Value::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Unsupported> {
        self.scalar(&Value::from(v))
    }
    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(mut self, v: &str) -> Result<(), Unsupported> {
        self.prefix();
        let indent = self.indent();
        write_str(self.out, v, indent, false);
        self.out.push('\n');
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Unsupported> {
        let mut c = self.compound(false);
        for b in v {
            c.item(b)?;
        }
        c.finish()
    }
    fn serialize_none(self) -> Result<(), Unsupported> {
        self.raw("null")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Unsupported> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.raw("null")
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Unsupported> {
        self.raw("null")
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Unsupported> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), Unsupported> {
        let mut c = self.compound(true);
        c.key(variant);
        c.value(v)?;
        c.finish()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, Unsupported> {
        Ok(self.compound(false))
    }
    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>, Unsupported> {
        Ok(self.compound(false))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Unsupported> {
        Ok(self.compound(false))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        unsupported("a tuple variant")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, Unsupported> {
        Ok(self.compound(true))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Unsupported> {
        Ok(self.compound(true))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        unsupported("a struct variant")
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Unsupported> {
        self.item(v)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Unsupported> {
        self.item(v)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Unsupported> {
        self.item(v)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), Unsupported> {
        self.element();
        k.serialize(KeySer {
            out: self.out,
            indent: self.indent,
        })?;
        self.out.push(':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Unsupported> {
        self.value(v)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Unsupported> {
        self.key(key);
        self.value(v)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.finish()
    }
}

/// Map keys: strings only (what `to_value` turns other keys into is left to the fallback).
struct KeySer<'a> {
    out: &'a mut String,
    indent: usize,
}

type KeyResult = Result<(), Unsupported>;

impl ser::Serializer for KeySer<'_> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Impossible<(), Unsupported>;
    type SerializeTuple = Impossible<(), Unsupported>;
    type SerializeTupleStruct = Impossible<(), Unsupported>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Impossible<(), Unsupported>;
    type SerializeStruct = Impossible<(), Unsupported>;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_bool(self, _: bool) -> KeyResult {
        unsupported("a boolean key")
    }
    fn serialize_i8(self, _: i8) -> KeyResult {
        unsupported("an integer key")
    }
    fn serialize_i16(self, _: i16) -> KeyResult {
        unsupported("an integer key")
    }
    fn serialize_i32(self, _: i32) -> KeyResult {
        unsupported("an integer key")
    }
    fn serialize_i64(self, _: i64) -> KeyResult {
        unsupported("an integer key")
    }
    fn serialize_u8(self, _: u8) -> KeyResult {
        unsupported("an integer key")
    }
    fn serialize_u16(self, _: u16) -> KeyResult {
        unsupported("an integer key")
    }
    fn serialize_u32(self, _: u32) -> KeyResult {
        unsupported("an integer key")
    }
    fn serialize_u64(self, _: u64) -> KeyResult {
        unsupported("an integer key")
    }
    fn serialize_f32(self, _: f32) -> KeyResult {
        unsupported("a number key")
    }
    fn serialize_f64(self, _: f64) -> KeyResult {
        unsupported("a number key")
    }
    fn serialize_char(self, _: char) -> KeyResult {
        unsupported("a char key")
    }
    fn serialize_str(self, v: &str) -> KeyResult {
        write_str(self.out, v, self.indent, true);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> KeyResult {
        unsupported("a bytes key")
    }
    fn serialize_none(self) -> KeyResult {
        unsupported("a null key")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> KeyResult {
        unsupported("an optional key")
    }
    fn serialize_unit(self) -> KeyResult {
        unsupported("a unit key")
    }
    fn serialize_unit_struct(self, _: &'static str) -> KeyResult {
        unsupported("a unit key")
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, v: &'static str) -> KeyResult {
        self.serialize_str(v)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> KeyResult {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> KeyResult {
        unsupported("a variant key")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Unsupported> {
        unsupported("a sequence key")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Unsupported> {
        unsupported("a tuple key")
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Unsupported> {
        unsupported("a tuple key")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        unsupported("a variant key")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        unsupported("a mapping key")
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Unsupported> {
        unsupported("a mapping key")
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        unsupported("a variant key")
    }
}
