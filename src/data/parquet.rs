//! Documents from `.parquet` files (the format of HF dataset dumps such as FineWeb samples): one
//! document per row, its text in the `data.text_field` string column.

use super::records::Skipped;
use anyhow::{anyhow, bail, Result};
use parquet::file::reader::{ChunkReader, FileReader, SerializedFileReader};
use parquet::record::Field;
use parquet::schema::types::Type;
use std::sync::Arc;

/// Streams the rows of a parquet file (a `std::fs::File`, or bytes) to `each` as `(row, text)`,
/// rows numbered from 1. A row whose column is null, not a string or not UTF-8 is an error naming
/// `shown` and the row, or with `skip` is counted in `skipped`.
pub fn parquet_rows<R: ChunkReader + 'static>(shown: &str, input: R, field: &str, skip: bool, skipped: &mut Skipped, each: &mut dyn FnMut(usize, String) -> Result<()>) -> Result<()> {
    let reader = SerializedFileReader::new(input).map_err(|e| anyhow!("{shown}: not a readable parquet file ({e})"))?;
    let schema = reader.metadata().file_metadata().schema();
    let Some(column) = schema.get_fields().iter().find(|f| f.name() == field) else {
        let names: Vec<&str> = schema.get_fields().iter().map(|f| f.name()).collect();
        bail!("{shown}: no column {field:?} (data.text_field); its columns: {}", names.join(", "));
    };
    let projection = Type::group_type_builder(schema.name()).with_fields(vec![Arc::clone(column)]).build().map_err(|e| anyhow!("{shown}: {e}"))?;
    let rows = reader.get_row_iter(Some(projection)).map_err(|e| anyhow!("{shown}: cannot read column {field:?} ({e})"))?;
    for (i, row) in rows.enumerate() {
        let why = match row {
            Err(e) => format!("unreadable ({e})"),
            Ok(row) => match row.get_column_iter().next().map(|(_, f)| f) {
                Some(Field::Str(s)) => {
                    each(i + 1, if s.contains("\r\n") { s.replace("\r\n", "\n") } else { s.clone() })?;
                    continue;
                }
                Some(Field::Null) | None => format!("column {field:?} is null"),
                Some(Field::Bytes(_)) => format!("column {field:?} holds bytes, not UTF-8 text"),
                Some(other) => format!("column {field:?} is not a string but {other}"),
            },
        };
        skipped.bad(skip, format!("{shown}: row {}", i + 1), why, "rows")?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use parquet::data_type::{ByteArray, ByteArrayType, Int32Type};
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    fn parquet_rows(shown: &str, bytes: Vec<u8>, field: &str, skip: bool, skipped: &mut Skipped) -> Result<Vec<(usize, String)>> {
        let mut out = vec![];
        super::parquet_rows(shown, bytes::Bytes::from(bytes), field, skip, skipped, &mut |i, t| {
            out.push((i, t));
            Ok(())
        })?;
        Ok(out)
    }

    /// A parquet file with an optional UTF-8 column `text` (`None`: null) and an int column `n`.
    pub(crate) fn write(texts: &[Option<&str>]) -> Vec<u8> {
        let schema = Arc::new(parse_message_type("message m { OPTIONAL BYTE_ARRAY text (UTF8); REQUIRED INT32 n; }").unwrap());
        let mut buf = Vec::new();
        let mut w = SerializedFileWriter::new(&mut buf, schema, Default::default()).unwrap();
        let mut rg = w.next_row_group().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        let values: Vec<ByteArray> = texts.iter().flatten().map(|s| ByteArray::from(*s)).collect();
        let defs: Vec<i16> = texts.iter().map(|t| t.is_some() as i16).collect();
        col.typed::<ByteArrayType>().write_batch(&values, Some(&defs), None).unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<Int32Type>().write_batch(&(0..texts.len() as i32).collect::<Vec<_>>(), None, None).unwrap();
        col.close().unwrap();
        rg.close().unwrap();
        w.close().unwrap();
        buf
    }

    #[test]
    fn rows_of_the_text_column_and_bad_rows() {
        let bytes = write(&[Some("first\r\ndoc"), Some("second"), None, Some("fourth")]);
        let mut skipped = Skipped::default();
        let e = parquet_rows("d.parquet", bytes.clone(), "text", false, &mut skipped).unwrap_err().to_string();
        assert!(e.contains("d.parquet: row 3") && e.contains("null") && e.contains("skip_bad_records"), "{e}");
        let rows = parquet_rows("d.parquet", bytes.clone(), "text", true, &mut skipped).unwrap();
        assert_eq!(rows, vec![(1, "first\ndoc".to_string()), (2, "second".into()), (4, "fourth".into())]);
        assert_eq!(skipped.count, 1);
        assert!(skipped.first.as_deref().unwrap().contains("row 3"));
        let e = parquet_rows("d.parquet", bytes.clone(), "body", false, &mut Skipped::default()).unwrap_err().to_string();
        assert!(e.contains("no column \"body\"") && e.contains("text, n"), "{e}");
        let e = parquet_rows("d.parquet", bytes.clone(), "n", false, &mut Skipped::default()).unwrap_err().to_string();
        assert!(e.contains("row 1") && e.contains("not a string"), "{e}");
        let e = parquet_rows("x.parquet", b"not parquet at all".to_vec(), "text", false, &mut Skipped::default()).unwrap_err().to_string();
        assert!(e.contains("x.parquet: not a readable parquet file"), "{e}");
    }
}
