use std::path::PathBuf;

/// What went wrong with the embedded model: finding, installing, loading or running it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The model file is not there.
    #[error("the model file {} of local/{model} is missing: {fix}", path.display())]
    ModelMissing {
        model: String,
        path: PathBuf,
        fix: String,
    },
    /// The model file is there but its content is not what was installed.
    #[error("the model file {} of local/{model} is corrupt (sha256 {actual}, expected {expected}): {fix}", path.display())]
    ChecksumMismatch {
        model: String,
        path: PathBuf,
        expected: String,
        actual: String,
        fix: String,
    },
    /// The file is not a GGUF model llama.cpp can load.
    #[error("cannot load the model {}: {message}", path.display())]
    Load { path: PathBuf, message: String },
    /// `local/<name>` names no known model and no `.gguf` file.
    #[error("unknown local model '{name}': {reason}")]
    UnknownModel { name: String, reason: String },
    /// Installing a model failed.
    #[error("cannot install {model}: {message}")]
    Install { model: String, message: String },
    /// The prompt does not fit the context window.
    #[error("the prompt has {prompt_tokens} tokens; the context window is {context} tokens")]
    ContextLength { prompt_tokens: usize, context: u32 },
    /// The JSON Schema of a tool or response format cannot be turned into a grammar.
    #[error("cannot constrain decoding to the schema: {0}")]
    Grammar(String),
    /// Constrained output stopped before it was complete JSON (usually `max_tokens`).
    #[error("the model's output is not valid JSON of the requested shape: {0}")]
    InvalidOutput(String),
    /// llama.cpp failed while generating.
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("{context}: {message}")]
    Io { context: String, message: String },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, e: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            message: e.to_string(),
        }
    }

    /// Whether sending the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::InvalidOutput(_))
    }
}

impl From<Error> for baton_llm::Error {
    fn from(e: Error) -> Self {
        match &e {
            Error::ModelMissing { .. }
            | Error::ChecksumMismatch { .. }
            | Error::UnknownModel { .. } => {
                let name = match &e {
                    Error::UnknownModel { name, .. } => name.clone(),
                    Error::ModelMissing { model, .. } | Error::ChecksumMismatch { model, .. } => {
                        model.clone()
                    }
                    _ => String::new(),
                };
                baton_llm::Error::UnknownModel {
                    model: format!("local/{name}"),
                    reason: e.to_string(),
                }
            }
            Error::ContextLength { .. } => baton_llm::Error::ContextLength {
                message: e.to_string(),
            },
            Error::InvalidOutput(m) => baton_llm::Error::InvalidResponse(m.clone()),
            Error::Grammar(_) | Error::Load { .. } | Error::Install { .. } | Error::Io { .. } => {
                baton_llm::Error::Config(e.to_string())
            }
            Error::Inference(m) => baton_llm::Error::Provider {
                provider: "local".into(),
                status: 500,
                message: m.clone(),
            },
        }
    }
}
