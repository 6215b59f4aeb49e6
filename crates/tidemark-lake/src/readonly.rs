//! An object store that reads and never writes: what a read-only warehouse
//! ([`crate::Warehouse::open_read_only`]) hands every Delta table it opens, so a
//! table read from another environment's warehouse (a deferred build reading prod)
//! has no write path at all. Every put, multipart upload, delete, copy and rename is
//! refused before it reaches the store underneath; reads and listings go through.

use std::fmt;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// `inner`, read only.
#[derive(Debug)]
pub(crate) struct ReadOnlyStore {
    inner: Arc<dyn ObjectStore>,
    /// The warehouse, for messages.
    location: String,
}

impl ReadOnlyStore {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, location: &str) -> Self {
        Self {
            inner,
            location: location.to_string(),
        }
    }

    fn refuse(&self, what: &str, path: &Path) -> object_store::Error {
        refusal(&self.location, what, path)
    }
}

fn refusal(location: &str, what: &str, path: &Path) -> object_store::Error {
    object_store::Error::PermissionDenied {
        path: path.to_string(),
        source: format!(
            "{what} refused: warehouse {location} is open read-only (another environment's, read by a deferred build)"
        )
        .into(),
    }
}

impl fmt::Display for ReadOnlyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReadOnly({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for ReadOnlyStore {
    async fn put_opts(
        &self,
        location: &Path,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(self.refuse("writing", location))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(self.refuse("writing", location))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let location = self.location.clone();
        locations
            .map(move |p| Err(refusal(&location, "deleting", &p?)))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        _from: &Path,
        to: &Path,
        _options: CopyOptions,
    ) -> object_store::Result<()> {
        Err(self.refuse("copying", to))
    }

    async fn rename_opts(
        &self,
        from: &Path,
        _to: &Path,
        _options: RenameOptions,
    ) -> object_store::Result<()> {
        Err(self.refuse("renaming", from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn reads_pass_and_writes_are_refused() {
        let mem: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let path = Path::from("t/_delta_log/00000000000000000000.json");
        mem.put(&path, "{}".into()).await.unwrap();
        let ro = ReadOnlyStore::new(mem.clone(), "file:///prod/");
        assert_eq!(ro.get(&path).await.unwrap().bytes().await.unwrap(), "{}");
        let listed: Vec<_> = ro.list(None).collect().await;
        assert_eq!(listed.len(), 1);
        let e = ro.put(&path, "x".into()).await.unwrap_err().to_string();
        assert!(e.contains("read-only"), "{e}");
        assert!(ro.delete(&path).await.is_err());
        assert!(ro.copy(&path, &Path::from("u")).await.is_err());
        assert!(ro.rename(&path, &Path::from("u")).await.is_err());
        assert!(ro.put_multipart(&Path::from("v")).await.is_err());
        // Nothing reached the store underneath.
        assert_eq!(mem.get(&path).await.unwrap().bytes().await.unwrap(), "{}");
        assert_eq!(mem.list(None).collect::<Vec<_>>().await.len(), 1);
    }
}
