//! MiniLM against the reference: `reference.json` holds the vectors and cosines that
//! `bench/reference.py` (numpy, the same model files) computed for five sentences. Needs the
//! model (`make model-embed`); skipped loudly without it unless BATON_REQUIRE_EMBED_MODEL=1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use baton_embed::{Embedder, VectorIndex, cosine};

#[derive(serde::Deserialize)]
struct Reference {
    sentences: Vec<String>,
    vectors: Vec<Vec<f32>>,
    cosine: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("reference.json")).unwrap()
}

/// The model, loaded once for all tests of this binary.
fn embedder() -> Option<&'static Embedder> {
    static MODEL: OnceLock<Option<Embedder>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = baton_test_support::found_or_skip(
                "BATON_REQUIRE_EMBED_MODEL",
                "the MiniLM embedding tests",
                baton_embed::installed_model_dir().map_err(|e| e.to_string()),
            )?;
            Some(Embedder::load(&dir).unwrap())
        })
        .as_ref()
}

#[test]
fn vectors_match_the_reference_implementation() {
    let Some(model) = embedder() else { return };
    let want = reference();
    let texts: Vec<&str> = want.sentences.iter().map(String::as_str).collect();
    let got = model.embed(&texts).unwrap();
    assert_eq!(got.len(), texts.len());
    for (i, (g, w)) in got.iter().zip(&want.vectors).enumerate() {
        assert_eq!(g.len(), 384);
        let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "sentence {i} has norm {norm}");
        let c = cosine(g, w);
        assert!(c > 0.999, "sentence {i}: cosine to the reference is {c}");
        for (d, (a, b)) in g.iter().zip(w).take(8).enumerate() {
            assert!((a - b).abs() < 1e-3, "sentence {i} dim {d}: {a} vs {b}");
        }
    }
    for i in 0..got.len() {
        for j in 0..got.len() {
            let c = cosine(&got[i], &got[j]);
            let w = want.cosine[i][j];
            assert!((c - w).abs() < 2e-3, "cosine({i},{j}) = {c}, reference {w}");
        }
    }
}

#[test]
fn a_text_embeds_the_same_alone_and_in_a_padded_batch() {
    let Some(model) = embedder() else { return };
    let alone = model.embed(&["A feline rests on a rug."]).unwrap();
    let long = "a much longer text that forces the short one to be padded ".repeat(4);
    let batch = model
        .embed(&[long.as_str(), "A feline rests on a rug."])
        .unwrap();
    assert!(cosine(&alone[0], &batch[1]) > 0.9999);
    assert!(model.embed(&[]).unwrap().is_empty());
}

#[test]
fn similar_sentences_are_found_first() {
    let Some(model) = embedder() else { return };
    let facts = [
        "The deploy key is rotated every Monday.",
        "Our cat is called Miso and likes boxes.",
        "Invoices are paid within thirty days.",
    ];
    let vectors = model.embed(&facts).unwrap();
    let mut index = VectorIndex::new(model.dim());
    for (i, v) in vectors.iter().enumerate() {
        index.add(i, v).unwrap();
    }
    let q = model.embed(&["what is the name of the pet?"]).unwrap();
    let hits = index.search(&q[0], 2).unwrap();
    assert_eq!(hits[0].0, 1, "{hits:?}");
}

#[test]
fn texts_longer_than_the_model_window_are_truncated_not_refused() {
    let Some(model) = embedder() else { return };
    let long = "word ".repeat(2000);
    let v = model.embed(&[long.as_str()]).unwrap();
    assert_eq!(v[0].len(), 384);
}
