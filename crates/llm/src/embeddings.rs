//! Text embeddings from a provider's server: `POST {base_url}/embeddings` for OpenAI-compatible
//! servers, `POST /api/embed` for Ollama. Anthropic offers no embeddings endpoint. Used by team
//! memory when `[memory] embeddings` in `baton.toml` names a provider's model instead of the
//! built-in MiniLM.

use serde_json::{Value, json};

use crate::Error;
use crate::adapter::Connection;

/// The largest answer read: 2,048 vectors of 3,072 floats as JSON text is about 120 MB; a
/// batch here is at most 64 texts.
const ANSWER_CAP: usize = 64 << 20;

/// Texts sent in one request.
pub const BATCH: usize = 64;

/// The vectors of `texts` from an OpenAI-compatible server, in order.
pub async fn openai(
    conn: &Connection,
    model: &str,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, Error> {
    let body = json!({"model": model, "input": texts, "encoding_format": "float"});
    let answer = conn.post_for_json("embeddings", &body, ANSWER_CAP).await?;
    let provider = conn.provider();
    let data = answer
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| shape(provider, "no `data` list"))?;
    let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
    for (position, item) in data.iter().enumerate() {
        // `index` says which input a vector belongs to; servers that leave it out answer in
        // order.
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .map_or(position, |i| i as usize);
        let slot = out.get_mut(index).ok_or_else(|| {
            shape(
                provider,
                &format!("a vector for input {index}, but {} were sent", texts.len()),
            )
        })?;
        *slot = Some(floats(provider, item.get("embedding"))?);
    }
    collect(provider, out)
}

/// The vectors of `texts` from Ollama's `/api/embed`, in order.
pub async fn ollama(
    conn: &Connection,
    model: &str,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, Error> {
    let body = json!({"model": model, "input": texts});
    let answer = conn.post_for_json("api/embed", &body, ANSWER_CAP).await?;
    let provider = conn.provider();
    let list = answer
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or_else(|| shape(provider, "no `embeddings` list"))?;
    let out = list
        .iter()
        .map(|v| floats(provider, Some(v)).map(Some))
        .collect::<Result<Vec<_>, _>>()?;
    if out.len() != texts.len() {
        return Err(shape(
            provider,
            &format!("{} vectors for {} texts", out.len(), texts.len()),
        ));
    }
    collect(provider, out)
}

fn floats(provider: &str, v: Option<&Value>) -> Result<Vec<f32>, Error> {
    let list = v
        .and_then(Value::as_array)
        .ok_or_else(|| shape(provider, "a vector that is not a list of numbers"))?;
    if list.is_empty() {
        return Err(shape(provider, "an empty vector"));
    }
    list.iter()
        .map(|x| {
            x.as_f64()
                .map(|f| f as f32)
                .ok_or_else(|| shape(provider, "a vector holding something other than numbers"))
        })
        .collect()
}

fn collect(provider: &str, out: Vec<Option<Vec<f32>>>) -> Result<Vec<Vec<f32>>, Error> {
    let dim = out.iter().flatten().next().map_or(0, Vec::len);
    out.into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            None => Err(shape(provider, &format!("no vector for input {i}"))),
            Some(v) if v.len() != dim => Err(shape(
                provider,
                &format!("vectors of {} and {dim} numbers in one answer", v.len()),
            )),
            Some(v) => Ok(v),
        })
        .collect()
}

fn shape(provider: &str, what: &str) -> Error {
    Error::InvalidResponse(format!("{provider}: the embeddings answer has {what}"))
}
