//! Small files in the filer, with their content inline in the entry: where the gateway keeps
//! checkpoints of its state, and how it removes what they replace (older checkpoints, and the
//! log files of state partitions that a checkpoint covers).

use smq_proto::filer_pb::seaweed_filer_client::SeaweedFilerClient;
use smq_proto::filer_pb::{
    CreateEntryRequest, DeleteEntryRequest, Entry, FuseAttributes, ListEntriesRequest,
    LookupDirectoryEntryRequest,
};

use crate::client::SmqClient;
use crate::error::{SmqError, SmqResult, codes};

/// Entries asked for per ListEntries page.
const LIST_PAGE: u32 = 1024;

/// A directory entry as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilerEntry {
    pub name: String,
    pub is_directory: bool,
    /// Bytes of the file (inline content or chunks).
    pub size: u64,
    /// Unix seconds of the last change.
    pub mtime: i64,
    /// SMQ log files: the smallest and largest SMQ offsets they hold (attributes the broker
    /// sets only when the smallest is above 0).
    pub offset_min: Option<i64>,
    pub offset_max: Option<i64>,
}

fn attr(e: &smq_proto::filer_pb::Entry, name: &str) -> Option<i64> {
    let v: [u8; 8] = e.extended.get(name)?.as_slice().try_into().ok()?;
    Some(i64::from_be_bytes(v))
}

/// How the filer says an entry does not exist (4.48 answers a lookup with code Unknown and
/// "filer: no entry is found in filer store").
fn is_missing(code: tonic::Code, message: &str) -> bool {
    code == tonic::Code::NotFound
        || message.contains("no entry is found")
        || message.contains("not found")
}

fn broker_error(what: String, error: String) -> SmqError {
    SmqError::Broker {
        code: codes::UNKNOWN,
        message: format!("{what}: {error}"),
    }
}

impl SmqClient {
    async fn filer(&self) -> SmqResult<(String, SeaweedFilerClient<tonic::transport::Channel>)> {
        let grpc = self.filers().await?.remove(0);
        let client = SeaweedFilerClient::new(self.channel(&grpc)?)
            .max_decoding_message_size(self.config().max_decoding_message_size);
        Ok((grpc, client))
    }

    async fn timed<T>(
        &self,
        what: impl FnOnce() -> String,
        call: impl std::future::Future<Output = Result<T, tonic::Status>>,
        filer: &str,
    ) -> SmqResult<T> {
        let timeout = self.config().request_timeout;
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| SmqError::Timeout {
                what: what(),
                after: timeout,
            })?
            .map_err(|s| SmqError::rpc(filer, s))
    }

    /// Writes `dir/name` with `content` inline, replacing it if it exists. The filer keeps the
    /// bytes in its metadata store: meant for files of up to a few MiB.
    pub async fn put_file(&self, dir: &str, name: &str, content: Vec<u8>) -> SmqResult<()> {
        let (grpc, mut client) = self.filer().await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let req = CreateEntryRequest {
            directory: dir.to_string(),
            entry: Some(Entry {
                name: name.to_string(),
                is_directory: false,
                chunks: Vec::new(),
                attributes: Some(FuseAttributes {
                    file_size: content.len() as u64,
                    mtime: now,
                    file_mode: 0o644,
                    crtime: now,
                }),
                extended: Default::default(),
                content,
            }),
            o_excl: false,
        };
        let r = self
            .timed(
                || format!("CreateEntry {dir}/{name}"),
                client.create_entry(req),
                &grpc,
            )
            .await?
            .into_inner();
        if !r.error.is_empty() {
            return Err(broker_error(format!("creating {dir}/{name}"), r.error));
        }
        Ok(())
    }

    /// The inline content of `dir/name`; None when there is no such file. A file whose bytes
    /// are in chunks (not written by [`SmqClient::put_file`]) is an error.
    pub async fn get_file(&self, dir: &str, name: &str) -> SmqResult<Option<Vec<u8>>> {
        let (grpc, mut client) = self.filer().await?;
        let req = LookupDirectoryEntryRequest {
            directory: dir.to_string(),
            name: name.to_string(),
        };
        let r = self
            .timed(
                || format!("LookupDirectoryEntry {dir}/{name}"),
                client.lookup_directory_entry(req),
                &grpc,
            )
            .await;
        let entry = match r {
            Ok(r) => r.into_inner().entry,
            Err(SmqError::Rpc { code, message, .. }) if is_missing(code, &message) => None,
            Err(e) => return Err(e),
        };
        let Some(entry) = entry else {
            return Ok(None);
        };
        let size = entry.attributes.as_ref().map_or(0, |a| a.file_size);
        if entry.content.is_empty() && (size > 0 || !entry.chunks.is_empty()) {
            return Err(broker_error(
                format!("reading {dir}/{name}"),
                "the file's bytes are in chunks, not inline".to_string(),
            ));
        }
        Ok(Some(entry.content))
    }

    /// The entries of `dir`, in name order; empty when it does not exist.
    pub async fn list_dir(&self, dir: &str) -> SmqResult<Vec<FilerEntry>> {
        let (grpc, mut client) = self.filer().await?;
        let mut out: Vec<FilerEntry> = Vec::new();
        let mut start = String::new();
        loop {
            let req = ListEntriesRequest {
                directory: dir.to_string(),
                prefix: String::new(),
                start_from_file_name: start.clone(),
                inclusive_start_from: false,
                limit: LIST_PAGE,
            };
            let page = self
                .timed(
                    || format!("ListEntries {dir}"),
                    async {
                        let mut stream = client.list_entries(req).await?.into_inner();
                        let mut entries = Vec::new();
                        while let Some(r) = stream.message().await? {
                            if let Some(e) = r.entry {
                                entries.push(e);
                            }
                        }
                        Ok(entries)
                    },
                    &grpc,
                )
                .await;
            let page = match page {
                Ok(p) => p,
                Err(SmqError::Rpc { code, message, .. }) if is_missing(code, &message) => {
                    Vec::new()
                }
                Err(e) => return Err(e),
            };
            let n = page.len();
            for e in page {
                start.clone_from(&e.name);
                let size = e.attributes.as_ref().map_or(0, |a| a.file_size).max(
                    e.chunks
                        .iter()
                        .map(|c| c.offset.max(0) as u64 + c.size)
                        .max()
                        .unwrap_or(0),
                );
                let (offset_min, offset_max) = (attr(&e, "offset_min"), attr(&e, "offset_max"));
                out.push(FilerEntry {
                    name: e.name,
                    is_directory: e.is_directory,
                    size: size.max(e.content.len() as u64),
                    mtime: e.attributes.as_ref().map_or(0, |a| a.mtime),
                    offset_min,
                    offset_max,
                });
            }
            if n < LIST_PAGE as usize {
                break;
            }
        }
        Ok(out)
    }

    /// Deletes `dir/name` (a directory with everything in it) and its data on the volume
    /// servers. Deleting what does not exist succeeds.
    pub async fn delete_path(&self, dir: &str, name: &str) -> SmqResult<()> {
        let (grpc, mut client) = self.filer().await?;
        let req = DeleteEntryRequest {
            directory: dir.to_string(),
            name: name.to_string(),
            is_delete_data: true,
            is_recursive: true,
            ignore_recursive_error: false,
        };
        let r = self
            .timed(
                || format!("DeleteEntry {dir}/{name}"),
                client.delete_entry(req),
                &grpc,
            )
            .await?
            .into_inner();
        if !r.error.is_empty() && !r.error.contains("not found") {
            return Err(broker_error(format!("deleting {dir}/{name}"), r.error));
        }
        Ok(())
    }
}

/// Unix nanoseconds of a log file's name (`YYYY-MM-DD-hh-mm-ss`, UTC: the start of the broker
/// buffer it holds); None for other names.
pub fn log_file_start_ns(name: &str) -> Option<i64> {
    let b = name.as_bytes();
    let well_formed = b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 | 10 | 13 | 16 => *c == b'-',
            _ => c.is_ascii_digit(),
        });
    if !well_formed {
        return None;
    }
    let n = |r: std::ops::Range<usize>| name[r].parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (the inverse of the proleptic Gregorian calendar's).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    secs.checked_mul(1_000_000_000)
}

impl SmqClient {
    /// The filer directory of a partition's current generation.
    pub async fn partition_dir(
        &self,
        topic: &smq_proto::schema_pb::Topic,
        index: i32,
    ) -> SmqResult<String> {
        let layout = self.lookup(topic).await?;
        let p = layout
            .partitions
            .get(index as usize)
            .ok_or_else(|| SmqError::PartitionNotFound {
                topic: topic.name.clone(),
                partition: index,
            })?
            .partition;
        Ok(format!(
            "/topics/{}/{}/{}/{:04}-{:04}",
            topic.namespace,
            topic.name,
            crate::generation_dir(p.unix_time_ns),
            p.range_start,
            p.range_stop
        ))
    }

    /// Deletes the partition's log files whose records all have broker timestamps below
    /// `before_ns`, oldest first, and returns (files, bytes) deleted. A file holds the records of
    /// one broker buffer, from the second its name gives until the next file's buffer began,
    /// which is less than a second after the next file's name: so a file goes only when the next
    /// file's name plus one second is at or below `before_ns`. The newest file always stays.
    pub async fn delete_log_files_before(
        &self,
        topic: &smq_proto::schema_pb::Topic,
        index: i32,
        before_ns: i64,
    ) -> SmqResult<(usize, u64)> {
        let dir = self.partition_dir(topic, index).await?;
        let mut logs: Vec<(i64, FilerEntry)> = self
            .list_dir(&dir)
            .await?
            .into_iter()
            .filter(|e| !e.is_directory)
            .filter_map(|e| log_file_start_ns(&e.name).map(|t| (t, e)))
            .collect();
        logs.sort_by_key(|(t, _)| *t);
        let mut deleted = (0, 0);
        for w in logs.windows(2) {
            let ((_, file), (next_start, _)) = (&w[0], &w[1]);
            if next_start.saturating_add(1_000_000_000) > before_ns {
                break;
            }
            self.delete_path(&dir, &file.name).await?;
            deleted.0 += 1;
            deleted.1 += file.size;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::log_file_start_ns;

    #[test]
    fn log_file_names_are_read_as_utc_seconds() {
        assert_eq!(log_file_start_ns("1970-01-01-00-00-00"), Some(0));
        assert_eq!(
            log_file_start_ns("2026-12-04-19-25-02"),
            Some(1_796_412_302 * 1_000_000_000)
        );
        assert_eq!(
            log_file_start_ns("2024-02-29-23-59-59"),
            Some(1_709_251_199 * 1_000_000_000)
        );
        assert_eq!(log_file_start_ns("checkpoint.offset"), None);
        assert_eq!(log_file_start_ns("2026-13-04-19-25-02"), None);
        assert_eq!(
            crate::generation_dir(1_796_412_302 * 1_000_000_000),
            "v2026-12-04-19-25-02"
        );
    }
}
