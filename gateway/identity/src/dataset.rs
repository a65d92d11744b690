//! The one spelling of a dataset name both processes compare: `catalog.schema.table`, a part
//! containing `.` or `"` (or empty) double-quoted with inner quotes doubled, so two different
//! tables never print alike. The gateway names the datasets it authorized this way in a
//! stamp's `scope` and `catalog`; the engine spells what it resolved the same way to check.

use std::fmt;

/// Writes `catalog.schema.table` in the canonical form.
pub fn write_dataset_id(out: &mut impl fmt::Write, catalog: &str, schema: &str, table: &str) -> fmt::Result {
    for (i, part) in [catalog, schema, table].into_iter().enumerate() {
        if i > 0 {
            out.write_char('.')?;
        }
        if part.contains(['.', '"']) || part.is_empty() {
            out.write_char('"')?;
            for c in part.chars() {
                if c == '"' {
                    out.write_char('"')?;
                }
                out.write_char(c)?;
            }
            out.write_char('"')?;
        } else {
            out.write_str(part)?;
        }
    }
    Ok(())
}

/// [`write_dataset_id`] into a new string.
pub fn dataset_id(catalog: &str, schema: &str, table: &str) -> String {
    let mut out = String::with_capacity(catalog.len() + schema.len() + table.len() + 2);
    // Writing into a String cannot fail.
    let _ = write_dataset_id(&mut out, catalog, schema, table);
    out
}

#[cfg(test)]
mod tests {
    use super::dataset_id;

    #[test]
    fn plain_parts_are_bare_and_odd_ones_quoted() {
        assert_eq!(dataset_id("datafusion", "public", "bank"), "datafusion.public.bank");
        assert_eq!(dataset_id("datafusion", "a.b", "c"), "datafusion.\"a.b\".c");
        assert_eq!(dataset_id("datafusion", "public", "say \"hi\""), "datafusion.public.\"say \"\"hi\"\"\"");
        assert_eq!(dataset_id("", "public", "t"), "\"\".public.t");
        // Different tables never print alike.
        assert_ne!(dataset_id("datafusion", "a.b", "c"), dataset_id("datafusion", "a", "b.c"));
    }
}
