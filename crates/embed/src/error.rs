use std::path::PathBuf;

/// What can go wrong loading or running the embedding model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the model is not there: the model is not installed (or only partly).
    #[error("the embedding model file {} is missing; install the model with `make model-embed` (or point BATON_MODELS_DIR at a models directory holding minilm-l6-v2/)", path.display())]
    Missing { path: PathBuf },
    /// A file is there but cannot be read or parsed.
    #[error("the embedding model file {} is broken ({message}); reinstall it with `make model-embed`", path.display())]
    Broken { path: PathBuf, message: String },
    /// The model asks for something this implementation does not do.
    #[error("unsupported embedding model: {0}")]
    Unsupported(String),
    /// Tokenising the input failed.
    #[error("cannot tokenise the text: {0}")]
    Tokenize(String),
    /// The forward pass failed.
    #[error("embedding failed: {0}")]
    Inference(String),
    /// A vector of the wrong length was given to an index.
    #[error("vector has {got} dimensions, the index holds {expected}")]
    Dimension { expected: usize, got: usize },
}

impl Error {
    /// True when installing the model (again) fixes it.
    pub fn is_install_problem(&self) -> bool {
        matches!(self, Error::Missing { .. } | Error::Broken { .. })
    }
}
