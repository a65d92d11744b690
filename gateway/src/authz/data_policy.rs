//! Row and column decisions for one caller and one governed dataset ([`DatasetPolicy`]):
//! which declared columns Cedar denies (`select` on `Column`), which it masks (no `unmask`
//! on a tagged `Column`: the tag's mask from `masks.yaml`), and which rows it shows (the
//! `select_row` policies partially evaluated with the row unknown, compiled by
//! [`super::row_filter`]). A row decision that fails shows no row (fail closed).

use std::collections::HashMap;

use cedar_policy::{Context, EntityUid, PartialEntities, PartialEntityUid, PartialRequest, PolicySet, Schema};
use identity::{ColumnMask, DatasetPolicy, RowFilter};

use super::columns::column_id;
use super::policies::GovernedDataset;
use super::row_filter;

/// What a row decision is made with, for one caller.
pub(crate) struct RowQuestion<'a> {
    pub policies: &'a PolicySet,
    pub schema: &'a Schema,
    pub principal: &'a EntityUid,
    pub action: &'a EntityUid,
    pub entities: &'a PartialEntities,
}

/// The decision for `dataset`: `allowed(action, column id)` answers one Cedar request on a
/// column, `context` is the dataset's request context (or why there is none). With
/// `alike_by_tags` (no policy tells two columns of a dataset with the same tags apart, see
/// [`super::columns::columns_alike_by_tags`]), Cedar is asked once per distinct tag set, not per column.
pub(crate) fn decide(
    dataset: &GovernedDataset,
    masks: &super::masks::MaskRules,
    alike_by_tags: bool,
    allowed: &dyn Fn(&str, &str) -> bool,
    rows: Option<(&RowQuestion<'_>, Result<Context, String>)>,
) -> DatasetPolicy {
    let mut denied = Vec::new();
    let mut masked = Vec::new();
    let mut unmasked = Vec::new();
    // Per sorted tag set: (may select, may unmask).
    let mut asked: HashMap<Vec<&str>, (bool, bool)> = HashMap::new();
    for column in &dataset.columns {
        // A pattern stands for columns the gateway does not know by name: decided only when
        // no policy tells columns apart by anything but their tags. Otherwise it is left
        // undecided, and the engine refuses a table with a column it tags (fail closed).
        if column.is_pattern() && !alike_by_tags {
            continue;
        }
        let id = column_id(&dataset.name, &column.name);
        let mask = masks.mask_for(column);
        let ask = || {
            let select = allowed("select", &id);
            (select, select && mask.is_some() && allowed("unmask", &id))
        };
        let (select, unmask) = if alike_by_tags {
            let mut tags: Vec<&str> = column.tags.iter().map(String::as_str).collect();
            tags.sort_unstable();
            *asked.entry(tags).or_insert_with(ask)
        } else {
            ask()
        };
        if !select {
            denied.push(column.name.clone());
            continue;
        }
        if let Some(mask) = mask {
            if unmask {
                unmasked.push(column.name.clone());
            } else {
                masked.push(ColumnMask { column: column.name.clone(), mask });
            }
        }
    }
    let (rows, row_policies) = match (&dataset.row_type, rows) {
        (Some(row_type), Some((question, context))) => {
            match context.and_then(|context| row_filter(question, row_type, context)) {
                Ok((filter, policies)) => (Some(filter), policies),
                Err(error) => {
                    tracing::error!(dataset = %dataset.name, %error, "cannot decide the row filter: no row is shown");
                    (Some(RowFilter::Bool(false)), Vec::new())
                }
            }
        }
        (Some(_), None) => (Some(RowFilter::Bool(false)), Vec::new()),
        (None, _) => (None, Vec::new()),
    };
    let rows = rows.filter(|filter| *filter != RowFilter::Bool(true));
    DatasetPolicy { dataset: dataset.name.to_string(), denied, masks: masked, unmasked, rows, row_policies }
}

/// The `select_row` policies for this caller with the row unknown, as one filter, with the
/// ids of the policies it was made of (a forbid that holds for every row alone, else every
/// permit and forbid whose condition depends on the row or holds).
fn row_filter(
    question: &RowQuestion<'_>,
    row_type: &cedar_policy::EntityTypeName,
    context: Context,
) -> Result<(RowFilter, Vec<String>), String> {
    let request = PartialRequest::new(
        PartialEntityUid::from_concrete(question.principal.clone()),
        question.action.clone(),
        PartialEntityUid::new(row_type.clone(), None),
        Some(context),
        question.schema,
    )
    .map_err(|e| e.to_string())?;
    let response = question.policies.tpe(&request, question.entities, question.schema).map_err(|e| e.to_string())?;
    let ids = |policies: &mut dyn Iterator<Item = &cedar_policy::PolicyId>| -> Vec<String> {
        let mut ids: Vec<String> = policies.map(ToString::to_string).collect();
        ids.sort();
        ids
    };
    let forbidding = ids(&mut response.true_forbids());
    if !forbidding.is_empty() {
        return Ok((RowFilter::Bool(false), forbidding));
    }
    let compile = |id: &cedar_policy::PolicyId| -> Result<RowFilter, String> {
        let policy = response.get_policy(id).ok_or_else(|| format!("no residual for {id}"))?;
        row_filter::compile_policy(&policy).map_err(|e| format!("policy {id}: {}", e.0))
    };
    let all_rows = ids(&mut response.true_permits());
    let (permits, mut used) = if all_rows.is_empty() {
        let permits = response.residual_permits().map(compile).collect::<Result<_, _>>()?;
        (permits, ids(&mut response.residual_permits()))
    } else {
        (vec![RowFilter::Bool(true)], all_rows)
    };
    let forbids: Vec<RowFilter> = response.residual_forbids().map(compile).collect::<Result<_, _>>()?;
    used.extend(ids(&mut response.residual_forbids()));
    Ok((row_filter::combine(permits, forbids), used))
}
