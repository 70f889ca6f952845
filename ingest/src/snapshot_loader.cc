#include "tagcache/ingest/snapshot_loader.h"

#include <roaring/roaring.hh>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace tagcache::ingest {
namespace {

using client::Client;
using client::CommitOutcome;
using client::SnapshotOutcome;

// Transient failures of one part are retried this many times in all; the
// merge makes a resent part harmless.
constexpr int kPartAttempts = 3;

bool IsTransient(const Status& status) {
  return status.code() == StatusCode::kIoError || status.code() == StatusCode::kOverloaded;
}

std::string Serialize(const Roaring& offsets) {
  std::string bytes(offsets.getSizeInBytes(/*portable=*/true), '\0');
  offsets.write(bytes.data(), /*portable=*/true);
  return bytes;
}

// One tag on its way to the cluster. Owned by the Loader; callbacks reach it
// through the loader's mutex.
struct TagJob {
  TagLoadResult result;
  std::map<uint64_t, std::string> parts;  // shard -> portable bitmap, kept until committed
  std::vector<uint64_t> shards;           // named in the commit (ascending)
  size_t parts_pending = 0;
  int commit_attempts = 0;
  bool changed = false;  // some part replaced a shard's base
  bool refused = false;  // a part failed for good: the tag is not committed
  bool done = false;
};

class Loader {
 public:
  Loader(Client* client, const SnapshotLoadOptions& options) : client_(client), options_(options) {
    call_.timeout = options.request_timeout;
  }

  std::vector<TagLoadResult> Run(SnapshotSet* set,
                                 const std::function<void(const SnapshotLoadProgress&)>& progress) {
    const std::vector<std::string> tags = set->Tags();
    {
      std::lock_guard<std::mutex> lock(mu_);
      progress_.tags_total = tags.size();
      for (const std::string& tag : tags) {
        for (const auto& [shard, offsets] : set->Parts(tag)) {
          progress_.bytes_total += offsets.getSizeInBytes(true);
        }
      }
    }
    std::vector<std::unique_ptr<TagJob>> jobs;
    jobs.reserve(tags.size());
    for (const std::string& tag : tags) {
      auto job = std::make_unique<TagJob>();
      job->result.tag = tag;
      TagJob* raw = job.get();
      jobs.push_back(std::move(job));
      StartTag(raw, set->Parts(tag), progress);
      set->Erase(tag);  // its parts are serialized in the job now
      ReapFinished(progress, /*wait_for_all=*/false);
    }
    ReapFinished(progress, /*wait_for_all=*/true);

    std::vector<TagLoadResult> results;
    results.reserve(jobs.size());
    for (auto& job : jobs) results.push_back(std::move(job->result));
    return results;
  }

 private:
  // Serializes the tag's parts and sends them, waiting for room in the
  // in-flight byte budget before each one.
  void StartTag(TagJob* job, const std::map<uint64_t, Roaring>& parts,
                const std::function<void(const SnapshotLoadProgress&)>& progress) {
    for (const auto& [shard, offsets] : parts) {
      job->result.users += offsets.cardinality();
      std::string bytes = Serialize(offsets);
      if (bytes.size() > options_.max_part_bytes) {
        std::lock_guard<std::mutex> lock(mu_);
        job->refused = true;
        job->result.state = TagLoadState::kFailed;
        job->result.message = "shard " + std::to_string(shard) + ": part of " +
                              std::to_string(bytes.size()) + " bytes exceeds the " +
                              std::to_string(options_.max_part_bytes) + "-byte frame limit";
        break;
      }
      job->shards.push_back(shard);
      job->parts.emplace(shard, std::move(bytes));
    }
    job->result.shards_sent = job->shards.size();

    std::unique_lock<std::mutex> lock(mu_);
    if (job->refused) {
      job->done = true;
      ++progress_.tags_done;
      return;
    }
    job->parts_pending = job->parts.size();
    if (job->parts_pending == 0) {
      lock.unlock();
      Commit(job);  // a tag with no members: the commit empties every shard
      return;
    }
    // The last part's answer can finish the tag (and free job->parts) before
    // this loop ends: iterate over a copy of what to send.
    std::vector<std::pair<uint64_t, uint64_t>> to_send;  // shard, bytes
    for (const auto& [shard, bytes] : job->parts) to_send.emplace_back(shard, bytes.size());
    for (const auto& [shard, size] : to_send) {
      // Room in the budget, but never deadlock on one part larger than it.
      while (in_flight_bytes_ > 0 && in_flight_bytes_ + size > options_.max_in_flight_bytes) {
        WaitAndReport(lock, progress);
      }
      in_flight_bytes_ += size;
      lock.unlock();
      SendPart(job, shard, 1);
      lock.lock();
    }
  }

  void SendPart(TagJob* job, uint64_t shard, int attempt) {
    const std::string& bytes = job->parts.at(shard);
    client_->LoadSnapshotAsync(
        job->result.tag, options_.ts, shard, bytes,
        [this, job, shard, attempt](Result<SnapshotOutcome> outcome) {
          OnPart(job, shard, attempt, std::move(outcome));
        },
        call_);
  }

  // On the client's I/O thread.
  void OnPart(TagJob* job, uint64_t shard, int attempt, Result<SnapshotOutcome> outcome) {
    if (!outcome.ok() && IsTransient(outcome.status()) && attempt < kPartAttempts) {
      SendPart(job, shard, attempt + 1);
      return;
    }
    bool commit = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const uint64_t size = job->parts.at(shard).size();
      in_flight_bytes_ -= size;
      cv_.notify_all();  // room in the budget for the next part
      if (outcome.ok()) {
        progress_.bytes_sent += size;
        switch (*outcome) {
          case SnapshotOutcome::kApplied:
            job->changed = true;
            break;
          case SnapshotOutcome::kDuplicate:
            break;
          case SnapshotOutcome::kTieWon:
          case SnapshotOutcome::kTieLost:
            job->changed = true;
            ++job->result.ties;
            break;
        }
      } else if (!job->refused) {
        job->refused = true;
        const Status& status = outcome.status();
        job->result.state = status.IsStaleSnapshot() ? TagLoadState::kStale : TagLoadState::kFailed;
        job->result.message = "shard " + std::to_string(shard) + ": " + status.ToString();
      }
      commit = --job->parts_pending == 0;
      if (commit && job->refused) {
        FinishLocked(job);
        commit = false;
      }
    }
    if (commit) Commit(job);
  }

  void Commit(TagJob* job) {
    client_->CommitSnapshotAsync(
        job->result.tag, options_.ts, job->shards,
        [this, job](Result<CommitOutcome> outcome) { OnCommit(job, std::move(outcome)); }, call_);
  }

  // On the client's I/O thread (or the caller's, for a tag without parts).
  void OnCommit(TagJob* job, Result<CommitOutcome> outcome) {
    std::vector<uint64_t> resend;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++job->commit_attempts;
      if (!outcome.ok()) {
        const bool retry =
            IsTransient(outcome.status()) && job->commit_attempts < options_.commit_attempts;
        if (!retry) {
          job->result.state = outcome.status().IsStaleSnapshot() ? TagLoadState::kStale
                                                                 : TagLoadState::kFailed;
          job->result.message = "commit: " + outcome.status().ToString();
          FinishLocked(job);
          return;
        }
        // Falls through with nothing to resend: the commit is sent again.
      } else if (outcome->missing_shards.empty()) {
        job->result.shards_emptied = outcome->shards_emptied;
        // No part changed a base and no shard was emptied: a re-run.
        job->result.state = job->changed || outcome->shards_emptied > 0 ? TagLoadState::kApplied
                                                                        : TagLoadState::kUnchanged;
        if (job->result.ties > 0) {
          job->result.message = std::to_string(job->result.ties) +
                                " shard(s) already held a different snapshot with the same ts "
                                "(operator error; the larger digest won)";
        }
        FinishLocked(job);
        return;
      } else if (job->commit_attempts >= options_.commit_attempts) {
        job->result.state = TagLoadState::kFailed;
        job->result.message = "commit: the node still misses the parts of " +
                              std::to_string(outcome->missing_shards.size()) + " shard(s) after " +
                              std::to_string(job->commit_attempts) + " attempts (first: shard " +
                              std::to_string(outcome->missing_shards.front()) + ")";
        FinishLocked(job);
        return;
      } else {
        for (uint64_t shard : outcome->missing_shards) {
          if (job->parts.count(shard) != 0) resend.push_back(shard);
        }
        job->parts_pending = resend.size();
        for (uint64_t shard : resend) in_flight_bytes_ += job->parts.at(shard).size();
      }
    }
    if (resend.empty()) {
      Commit(job);
      return;
    }
    // A part the node reports missing (e.g. it restarted without a data
    // directory in between) is sent again; the last one re-commits.
    for (uint64_t shard : resend) SendPart(job, shard, 1);
  }

  void FinishLocked(TagJob* job) {
    job->done = true;
    job->parts.clear();
    job->parts = {};
    ++progress_.tags_done;
    cv_.notify_all();
  }

  void WaitAndReport(std::unique_lock<std::mutex>& lock,
                     const std::function<void(const SnapshotLoadProgress&)>& progress) {
    cv_.wait_for(lock, std::chrono::milliseconds(200));
    if (progress) {
      SnapshotLoadProgress snapshot = progress_;
      lock.unlock();
      progress(snapshot);
      lock.lock();
    }
  }

  // Reports progress; with wait_for_all, until every tag is done.
  void ReapFinished(const std::function<void(const SnapshotLoadProgress&)>& progress,
                    bool wait_for_all) {
    std::unique_lock<std::mutex> lock(mu_);
    while (wait_for_all && progress_.tags_done < progress_.tags_total) {
      WaitAndReport(lock, progress);
    }
    if (progress && (wait_for_all || Clock::now() >= next_report_)) {
      next_report_ = Clock::now() + std::chrono::milliseconds(200);
      SnapshotLoadProgress snapshot = progress_;
      lock.unlock();
      progress(snapshot);
    }
  }

  using Clock = std::chrono::steady_clock;

  Client* client_;
  const SnapshotLoadOptions options_;
  client::CallOptions call_;

  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t in_flight_bytes_ = 0;
  SnapshotLoadProgress progress_;
  Clock::time_point next_report_ = Clock::now();
};

}  // namespace

const char* TagLoadStateName(TagLoadState state) {
  switch (state) {
    case TagLoadState::kApplied:
      return "applied";
    case TagLoadState::kUnchanged:
      return "unchanged";
    case TagLoadState::kStale:
      return "stale";
    case TagLoadState::kFailed:
      return "failed";
  }
  return "failed";
}

Result<std::vector<TagLoadResult>> LoadSnapshotSet(
    client::Client* client, SnapshotSet* set, const SnapshotLoadOptions& options,
    const std::function<void(const SnapshotLoadProgress&)>& progress) {
  if (options.ts == 0) {
    return Status::BadRequest("snapshot ts must be >= 1 (ms since the epoch)");
  }
  if (options.max_in_flight_bytes == 0) {
    return Status::BadRequest("max_in_flight_bytes must be >= 1");
  }
  Loader loader(client, options);
  return loader.Run(set, progress);
}

}  // namespace tagcache::ingest
