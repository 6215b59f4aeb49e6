//! What can go wrong with a model, said so that the reader knows which file to open
//! and what to change.

use std::path::PathBuf;

/// One model's failure. Every variant names the model (or its file); a failure
/// stops that model and the models downstream of it, never the others.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The models directory or a file in it cannot be read.
    #[error("{path}: {message}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A template or settings error at a line of a model's file.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Template {
        /// The model's file.
        path: PathBuf,
        /// The line, when known.
        line: Option<usize>,
        /// What is wrong and what to do.
        message: String,
    },
    /// Models that depend on each other in a circle.
    #[error("models depend on each other in a cycle: {}; a model cannot read itself through others (break the cycle, or read an earlier version with FOR SYSTEM_TIME AS OF)", cycle.join(" → "))]
    Cycle {
        /// The models of the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// The model's SQL failed to plan or run.
    #[error("model {model} ({}): {message}", path.display())]
    Sql {
        /// The model.
        model: String,
        /// Its file.
        path: PathBuf,
        /// DataFusion's message (with the line and column, for parse errors).
        message: String,
    },
    /// The model's result cannot land as it is (a type with no mapping, duplicate or
    /// NULL keys, an incompatible change of shape).
    #[error("model {model} ({}): {message}", path.display())]
    Result {
        /// The model.
        model: String,
        /// Its file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// Writing or reading the warehouse failed.
    #[error("model {model}: {source}")]
    Lake {
        /// The model.
        model: String,
        /// The lake's error (boxed: it is large, and rare).
        #[source]
        source: Box<tidemark_lake::Error>,
    },
    /// Not built because a model it reads failed.
    #[error("model {model} was not built: {upstream} failed")]
    Upstream {
        /// The model.
        model: String,
        /// The failed model it depends on.
        upstream: String,
    },
}

impl Error {
    /// A lake error while building `model`.
    pub fn lake(model: &str, source: tidemark_lake::Error) -> Self {
        Error::Lake {
            model: model.to_string(),
            source: Box::new(source),
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
