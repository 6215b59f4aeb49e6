//! Built-in functions served faster than DataFusion 55 serves them for tidemark's
//! own instants.
//!
//! Every instant tidemark lands is a `Timestamp(µs, "UTC")` (`_valid_from`,
//! `_ingest_ts`, MySQL `TIMESTAMP` and `DATETIME` columns). DataFusion's
//! `date_trunc` takes its slow path for any timestamp with a time zone: each value
//! is converted to the zone's local time through chrono-tz and back, about 100 ns a
//! value. `date_trunc('day', _valid_from)` over the 15.6M versions of the demo's
//! invoices then costs seconds, where the same truncation of a timestamp without a
//! zone is integer arithmetic. In UTC, local time is the instant itself, so
//! truncating the value as if it had no zone and putting the zone back gives the
//! same answer for every unit: [`UtcDateTrunc`] does that and otherwise leaves the
//! work to DataFusion's own function (same name, aliases, types, ordering and
//! documentation), registered in its place by [`register`].

use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef};
use deltalake::arrow::datatypes::{DataType, FieldRef, TimeUnit};
use deltalake::datafusion::common::{Result, ScalarValue};
use deltalake::datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};
use deltalake::datafusion::prelude::SessionContext;

/// Register the functions of this module in `ctx`, over DataFusion's of the same
/// names.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(UtcDateTrunc::new()));
}

/// Time zone names whose local time is UTC.
fn is_utc(tz: &str) -> bool {
    matches!(tz, "UTC" | "+00:00" | "Etc/UTC" | "Z")
}

/// A timestamp array or scalar in UTC, as the same values without a zone.
fn strip_utc(v: &ColumnarValue) -> Result<Option<ColumnarValue>> {
    Ok(match v {
        ColumnarValue::Array(a) => match a.data_type() {
            DataType::Timestamp(unit, Some(tz)) if is_utc(tz) => {
                let naive = DataType::Timestamp(*unit, None);
                // A zone is metadata on the same i64 values: the cast reinterprets.
                Some(ColumnarValue::Array(zone_as(a, &naive)?))
            }
            _ => None,
        },
        ColumnarValue::Scalar(s) => {
            let stripped = match s {
                ScalarValue::TimestampSecond(v, Some(tz)) if is_utc(tz) => {
                    ScalarValue::TimestampSecond(*v, None)
                }
                ScalarValue::TimestampMillisecond(v, Some(tz)) if is_utc(tz) => {
                    ScalarValue::TimestampMillisecond(*v, None)
                }
                ScalarValue::TimestampMicrosecond(v, Some(tz)) if is_utc(tz) => {
                    ScalarValue::TimestampMicrosecond(*v, None)
                }
                ScalarValue::TimestampNanosecond(v, Some(tz)) if is_utc(tz) => {
                    ScalarValue::TimestampNanosecond(*v, None)
                }
                _ => return Ok(None),
            };
            Some(ColumnarValue::Scalar(stripped))
        }
    })
}

/// `a`'s values under the timestamp type `to` (same unit, another zone or none).
fn zone_as(a: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    // Same unit and same i64 values: the data is shared, only the type changes.
    let data = a.to_data().into_builder().data_type(to.clone()).build()?;
    Ok(deltalake::arrow::array::make_array(data))
}

/// The result of truncating stripped values, given back the zone `tz`.
fn restore_zone(v: ColumnarValue, unit: TimeUnit, tz: Arc<str>) -> Result<ColumnarValue> {
    Ok(match v {
        ColumnarValue::Array(a) => {
            ColumnarValue::Array(zone_as(&a, &DataType::Timestamp(unit, Some(tz)))?)
        }
        ColumnarValue::Scalar(s) => ColumnarValue::Scalar(match s {
            ScalarValue::TimestampSecond(v, None) => ScalarValue::TimestampSecond(v, Some(tz)),
            ScalarValue::TimestampMillisecond(v, None) => {
                ScalarValue::TimestampMillisecond(v, Some(tz))
            }
            ScalarValue::TimestampMicrosecond(v, None) => {
                ScalarValue::TimestampMicrosecond(v, Some(tz))
            }
            ScalarValue::TimestampNanosecond(v, None) => {
                ScalarValue::TimestampNanosecond(v, Some(tz))
            }
            other => other,
        }),
    })
}

/// `date_trunc(unit, ts)`, DataFusion's, with a UTC `ts` truncated as a timestamp
/// without a zone (see the module's documentation).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct UtcDateTrunc {
    inner: Arc<ScalarUDF>,
}

impl UtcDateTrunc {
    /// Over DataFusion's `date_trunc`.
    pub fn new() -> Self {
        Self {
            inner: deltalake::datafusion::functions::datetime::date_trunc(),
        }
    }
}

impl Default for UtcDateTrunc {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for UtcDateTrunc {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let zone = match args.args.get(1).map(ColumnarValue::data_type) {
            Some(DataType::Timestamp(unit, Some(tz))) if is_utc(tz.as_ref()) => Some((unit, tz)),
            _ => None,
        };
        let Some((unit, tz)) = zone else {
            return self.inner.invoke_with_args(args);
        };
        if let Some(stripped) = strip_utc(&args.args[1])? {
            args.args[1] = stripped;
        }
        // The fields say the same as the values: without a zone (DataFusion checks
        // the result against the return field).
        let naive = DataType::Timestamp(unit, None);
        let without_zone = |f: &FieldRef| -> FieldRef {
            Arc::new(f.as_ref().clone().with_data_type(naive.clone()))
        };
        args.arg_fields[1] = without_zone(&args.arg_fields[1]);
        args.return_field = without_zone(&args.return_field);
        let out = self.inner.invoke_with_args(args)?;
        restore_zone(out, unit, tz)
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(input)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::TimestampMicrosecondArray;
    use deltalake::arrow::datatypes::Field;
    use deltalake::datafusion::config::ConfigOptions;

    async fn trunc(ctx: &SessionContext, unit: &str) -> Vec<String> {
        let sql = format!(
            "SELECT CAST(date_trunc('{unit}', t) AS VARCHAR) AS d, arrow_typeof(date_trunc('{unit}', t)) AS ty FROM v ORDER BY t"
        );
        let b = ctx
            .sql(&sql)
            .await
            .unwrap()
            .collect()
            .await
            .map_err(|e| e.to_string())
            .unwrap();
        crate::sorted_lines(&b, " ").unwrap()
    }

    /// Every unit gives what DataFusion's own function gives, the type (with its
    /// zone) included, for instants around days, months and years, and NULL.
    #[tokio::test]
    async fn the_same_answers_as_datafusion_s_own() {
        let values: Vec<Option<i64>> = vec![
            Some(0),
            Some(1_767_225_599_999_999),
            Some(1_767_225_600_000_000),
            Some(1_772_323_199_123_456),
            Some(-86_400_000_001),
            Some(951_782_400_000_000),
            None,
        ];
        let array = TimestampMicrosecondArray::from(values).with_timezone("UTC");
        let batch = deltalake::arrow::array::RecordBatch::try_from_iter([(
            "t",
            Arc::new(array) as ArrayRef,
        )])
        .unwrap();
        let plain = SessionContext::new();
        plain.register_batch("v", batch.clone()).unwrap();
        let fast = SessionContext::new();
        register(&fast);
        fast.register_batch("v", batch).unwrap();
        for unit in [
            "microsecond",
            "millisecond",
            "second",
            "minute",
            "hour",
            "day",
            "week",
            "month",
            "quarter",
            "year",
        ] {
            assert_eq!(
                trunc(&fast, unit).await,
                trunc(&plain, unit).await,
                "{unit}"
            );
        }
    }

    /// A scalar (what constant folding hands over) keeps its zone.
    #[test]
    fn a_scalar_keeps_its_zone() {
        let ts = ScalarValue::TimestampMicrosecond(Some(1_773_741_600_123_456), Some("UTC".into()));
        let field = |n: &str, t: DataType| Arc::new(Field::new(n, t, true));
        let args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Scalar(ScalarValue::Utf8(Some("month".into()))),
                ColumnarValue::Scalar(ts.clone()),
            ],
            arg_fields: vec![field("u", DataType::Utf8), field("t", ts.data_type())],
            number_rows: 1,
            return_field: field("r", ts.data_type()),
            config_options: Arc::new(ConfigOptions::default()),
        };
        let ColumnarValue::Scalar(got) = UtcDateTrunc::new()
            .invoke_with_args(args)
            .map_err(|e| e.to_string())
            .unwrap()
        else {
            panic!("a scalar in, a scalar out");
        };
        // 2026-03-17T10:00:00.123456Z truncated to 2026-03-01T00:00:00Z.
        assert_eq!(
            got,
            ScalarValue::TimestampMicrosecond(Some(1_772_323_200_000_000), Some("UTC".into()))
        );
    }
}
