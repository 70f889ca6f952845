// The POSIX file system (errors name the path and the OS reason) and the
// fault-injecting wrapper the durability tests lean on: short writes on a
// full disk, failing appends and fsyncs, and power loss dropping whatever
// was not synced.
#include "tagcache/storage/file_system.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/temp_dir.h"

namespace tagcache::storage {
namespace {

// One temp dir per test, removed afterwards.
class TempDir : public tagcache::testing::ScopedTempDir {
 public:
  TempDir() : ScopedTempDir("tagcache-fs") {}
};

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

bool Exists(const std::string& path) { return std::filesystem::exists(path); }

uint64_t SizeOf(const std::string& path) { return std::filesystem::file_size(path); }

std::string ReadThrough(FileSystem& fs, const std::string& path) {
  Result<std::unique_ptr<SequentialFile>> file = fs.NewSequentialFile(path);
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  if (!file.ok()) return {};
  std::string out;
  char buf[7];  // small on purpose: many reads
  for (;;) {
    Result<size_t> n = (*file)->Read(buf, sizeof buf);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    if (!n.ok() || *n == 0) return out;
    out.append(buf, *n);
  }
}

std::unique_ptr<WritableFile> MustCreate(FileSystem& fs, const std::string& path) {
  Result<std::unique_ptr<WritableFile>> file = fs.NewWritableFile(path);
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  return file.ok() ? std::move(*file) : nullptr;
}

// ---- PosixFileSystem ----------------------------------------------------------

TEST(PosixFileSystemTest, WrittenBytesReadBackAndSizeTracksThem) {
  TempDir dir;
  auto fs = NewPosixFileSystem();
  auto file = MustCreate(*fs, dir / "a");
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->size(), 0u);
  ASSERT_TRUE(file->Append("hello ").ok());
  ASSERT_TRUE(file->Append("").ok());
  ASSERT_TRUE(file->Append("world").ok());
  EXPECT_EQ(file->size(), 11u);
  ASSERT_TRUE(file->Sync().ok());
  ASSERT_TRUE(file->Close().ok());
  EXPECT_TRUE(file->Close().ok()) << "closing twice is harmless";
  EXPECT_EQ(ReadThrough(*fs, dir / "a"), "hello world");
  Result<uint64_t> size = fs->FileSize(dir / "a");
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, 11u);
}

TEST(PosixFileSystemTest, NewWritableFileTruncatesAnExistingFile) {
  TempDir dir;
  auto fs = NewPosixFileSystem();
  {
    auto file = MustCreate(*fs, dir / "a");
    ASSERT_TRUE(file->Append("old contents").ok());
  }
  auto file = MustCreate(*fs, dir / "a");
  ASSERT_TRUE(file->Append("new").ok());
  ASSERT_TRUE(file->Close().ok());
  EXPECT_EQ(ReadWholeFile(dir / "a"), "new");
}

TEST(PosixFileSystemTest, AppendAfterTruncateContinuesAtTheNewEnd) {
  TempDir dir;
  auto fs = NewPosixFileSystem();
  auto file = MustCreate(*fs, dir / "a");
  ASSERT_TRUE(file->Append("0123456789").ok());
  ASSERT_TRUE(file->Truncate(4).ok());
  EXPECT_EQ(file->size(), 4u);
  ASSERT_TRUE(file->Append("xy").ok());
  ASSERT_TRUE(file->Close().ok());
  EXPECT_EQ(ReadWholeFile(dir / "a"), "0123xy");
}

TEST(PosixFileSystemTest, OpeningInAMissingDirectoryIsAnIoErrorNamingThePath) {
  TempDir dir;
  auto fs = NewPosixFileSystem();
  const std::string path = dir / "missing/x.log";
  Result<std::unique_ptr<WritableFile>> w = fs->NewWritableFile(path);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kIoError);
  EXPECT_NE(w.status().message().find(path + ": No such file or directory"), std::string::npos)
      << w.status().message();

  Result<std::unique_ptr<SequentialFile>> r = fs->NewSequentialFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(path), std::string::npos);
}

TEST(PosixFileSystemTest, OperationsOnMissingPathsNameThem) {
  TempDir dir;
  auto fs = NewPosixFileSystem();
  const std::string missing = dir / "nope";
  auto names = [&](const Status& s) {
    EXPECT_EQ(s.code(), StatusCode::kIoError);
    EXPECT_NE(s.message().find(missing), std::string::npos) << s.message();
  };
  names(fs->FileSize(missing).status());
  names(fs->ListDir(missing).status());
  names(fs->Remove(missing));
  names(fs->Rename(missing, dir / "other"));
  names(fs->SyncDir(missing));
  names(fs->TruncateFile(missing, 0));
}

TEST(PosixFileSystemTest, AppendToAFullDeviceReportsNoSpace) {
  if (!Exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  auto fs = NewPosixFileSystem();
  auto file = MustCreate(*fs, "/dev/full");
  ASSERT_NE(file, nullptr);
  Status s = file->Append("data");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "cannot append to /dev/full: No space left on device");
  EXPECT_EQ(file->size(), 0u);
}

TEST(PosixFileSystemTest, CreateDirsMakesEveryLevelAndAcceptsExistingOnes) {
  TempDir dir;
  auto fs = NewPosixFileSystem();
  const std::string deep = dir / "a/b//c/";
  ASSERT_TRUE(fs->CreateDirs(deep).ok());
  EXPECT_TRUE(std::filesystem::is_directory(dir / "a/b/c"));
  EXPECT_TRUE(fs->CreateDirs(deep).ok());
  EXPECT_TRUE(fs->CreateDirs(dir.path()).ok());

  MustCreate(*fs, dir / "file");
  Status s = fs->CreateDirs(dir / "file/sub");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(dir / "file"), std::string::npos) << s.message();
}

TEST(PosixFileSystemTest, ListDirNamesEntriesWithoutDots) {
  TempDir dir;
  auto fs = NewPosixFileSystem();
  MustCreate(*fs, dir / "x");
  MustCreate(*fs, dir / "y");
  ASSERT_TRUE(fs->CreateDirs(dir / "sub").ok());
  Result<std::vector<std::string>> names = fs->ListDir(dir.path());
  ASSERT_TRUE(names.ok());
  std::sort(names->begin(), names->end());
  EXPECT_EQ(*names, (std::vector<std::string>{"sub", "x", "y"}));
}

TEST(PosixFileSystemTest, RenameReplacesTheTargetAndRemoveDeletes) {
  TempDir dir;
  auto fs = NewPosixFileSystem();
  ASSERT_TRUE(MustCreate(*fs, dir / "a")->Append("A").ok());
  ASSERT_TRUE(MustCreate(*fs, dir / "b")->Append("B").ok());
  ASSERT_TRUE(fs->Rename(dir / "a", dir / "b").ok());
  EXPECT_FALSE(Exists(dir / "a"));
  EXPECT_EQ(ReadWholeFile(dir / "b"), "A");
  ASSERT_TRUE(fs->SyncDir(dir.path()).ok());
  ASSERT_TRUE(fs->Remove(dir / "b").ok());
  EXPECT_FALSE(Exists(dir / "b"));
}

TEST(PosixFileSystemTest, TruncateFileCutsAnExistingFile) {
  TempDir dir;
  auto fs = NewPosixFileSystem();
  ASSERT_TRUE(MustCreate(*fs, dir / "a")->Append("0123456789").ok());
  ASSERT_TRUE(fs->TruncateFile(dir / "a", 3).ok());
  EXPECT_EQ(ReadWholeFile(dir / "a"), "012");
}

// ---- FaultInjectionFileSystem ---------------------------------------------------

class FaultInjectionFileSystemTest : public ::testing::Test {
 protected:
  TempDir dir_;
  std::unique_ptr<FileSystem> posix_ = NewPosixFileSystem();
  FaultInjectionFileSystem fs_{*posix_};
};

TEST_F(FaultInjectionFileSystemTest, SpaceLimitWritesWhatFitsThenFailsWithEnospc) {
  auto file = MustCreate(fs_, dir_ / "a");
  fs_.SetSpaceLimit(10);
  ASSERT_TRUE(file->Append("01234").ok());
  Status s = file->Append("56789abcdef");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find(dir_ / "a"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("No space left on device (injected)"), std::string::npos);
  EXPECT_EQ(file->size(), 10u);
  EXPECT_EQ(SizeOf(dir_ / "a"), 10u);
  EXPECT_EQ(fs_.appended_bytes(), 10u);
  EXPECT_FALSE(file->Append("x").ok()) << "still full";

  fs_.SetSpaceLimit(std::nullopt);
  ASSERT_TRUE(file->Append("!").ok());
  EXPECT_EQ(ReadWholeFile(dir_ / "a"), "0123456789!");
  EXPECT_EQ(fs_.appended_bytes(), 11u);
}

TEST_F(FaultInjectionFileSystemTest, SpaceLimitCountsEveryFile) {
  auto a = MustCreate(fs_, dir_ / "a");
  auto b = MustCreate(fs_, dir_ / "b");
  fs_.SetSpaceLimit(6);
  ASSERT_TRUE(a->Append("1234").ok());
  EXPECT_FALSE(b->Append("5678").ok());
  EXPECT_EQ(b->size(), 2u);
}

TEST_F(FaultInjectionFileSystemTest, ConcurrentAppendsNeverExceedTheSpaceLimit) {
  constexpr int kThreads = 4;
  std::vector<std::unique_ptr<WritableFile>> files;
  for (int i = 0; i < kThreads; ++i) files.push_back(MustCreate(fs_, dir_ / std::to_string(i)));
  fs_.SetSpaceLimit(10000);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      const std::string chunk(7, 'x');
      while (files[i]->Append(chunk).ok()) {
      }
    });
  }
  for (auto& t : threads) t.join();
  uint64_t total = 0;
  for (auto& f : files) total += f->size();
  EXPECT_EQ(total, 10000u);
  EXPECT_EQ(fs_.appended_bytes(), 10000u);
}

TEST_F(FaultInjectionFileSystemTest, FailNextAppendsWritesHalfAndFailsThatManyTimes) {
  auto file = MustCreate(fs_, dir_ / "a");
  fs_.FailNextAppends(2);
  Status s = file->Append("abcdefgh");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("Input/output error (injected)"), std::string::npos);
  EXPECT_EQ(file->size(), 4u);
  EXPECT_FALSE(file->Append("12").ok());
  EXPECT_EQ(file->size(), 5u);
  EXPECT_TRUE(file->Append("z").ok());
  EXPECT_EQ(ReadWholeFile(dir_ / "a"), "abcd1z");
}

TEST_F(FaultInjectionFileSystemTest, InjectedSyncFailureIsReportedAndNotCounted) {
  auto file = MustCreate(fs_, dir_ / "a");
  ASSERT_TRUE(file->Append("abc").ok());
  fs_.SetSyncFailure(true);
  Status s = file->Sync();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find("injected fsync failure"), std::string::npos);
  EXPECT_NE(s.message().find(dir_ / "a"), std::string::npos);
  EXPECT_FALSE(fs_.SyncDir(dir_.path()).ok());
  EXPECT_FALSE(fs_.TruncateFile(dir_ / "a", 1).ok());
  EXPECT_EQ(fs_.syncs(), 0u);

  fs_.SetSyncFailure(false);
  EXPECT_TRUE(file->Sync().ok());
  EXPECT_EQ(fs_.syncs(), 1u);
}

TEST_F(FaultInjectionFileSystemTest, DropUnsyncedDataCutsFilesToTheirSyncedSize) {
  auto file = MustCreate(fs_, dir_ / "a");
  ASSERT_TRUE(fs_.SyncDir(dir_.path()).ok());
  ASSERT_TRUE(file->Append(std::string(100, 'a')).ok());
  ASSERT_TRUE(file->Sync().ok());
  ASSERT_TRUE(file->Append(std::string(50, 'b')).ok());
  auto never_synced = MustCreate(fs_, dir_ / "b");
  ASSERT_TRUE(never_synced->Append("lost").ok());
  ASSERT_TRUE(fs_.SyncDir(dir_.path()).ok());

  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_EQ(ReadWholeFile(dir_ / "a"), std::string(100, 'a'));
  ASSERT_TRUE(Exists(dir_ / "b"));
  EXPECT_EQ(SizeOf(dir_ / "b"), 0u);
}

TEST_F(FaultInjectionFileSystemTest, DropUnsyncedDataRemovesFilesWhoseDirectoryWasNeverSynced) {
  auto file = MustCreate(fs_, dir_ / "a");
  ASSERT_TRUE(file->Append("synced data, but no directory entry").ok());
  ASSERT_TRUE(file->Sync().ok());
  ASSERT_TRUE(fs_.CreateDirs(dir_ / "other").ok());
  ASSERT_TRUE(fs_.SyncDir(dir_ / "other").ok());  // not a's directory
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_FALSE(Exists(dir_ / "a"));
}

TEST_F(FaultInjectionFileSystemTest, SyncDirMakesOnlyItsOwnEntriesDurable) {
  ASSERT_TRUE(fs_.CreateDirs(dir_ / "x").ok());
  ASSERT_TRUE(fs_.CreateDirs(dir_ / "y").ok());
  auto a = MustCreate(fs_, dir_ / "x/a");
  auto b = MustCreate(fs_, dir_ / "y/b");
  ASSERT_TRUE(fs_.SyncDir(dir_ / "x/").ok());  // trailing slash: same directory
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_TRUE(Exists(dir_ / "x/a"));
  EXPECT_FALSE(Exists(dir_ / "y/b"));
}

TEST_F(FaultInjectionFileSystemTest, RenameCarriesTheSyncedStateToTheNewName) {
  auto file = MustCreate(fs_, dir_ / "tmp");
  ASSERT_TRUE(file->Append(std::string(10, 's')).ok());
  ASSERT_TRUE(file->Sync().ok());
  ASSERT_TRUE(fs_.SyncDir(dir_.path()).ok());
  ASSERT_TRUE(file->Append(std::string(5, 'u')).ok());
  ASSERT_TRUE(fs_.Rename(dir_ / "tmp", dir_ / "final").ok());
  // The open file keeps reporting syncs under its new name.
  ASSERT_TRUE(file->Append(std::string(3, 'v')).ok());
  ASSERT_TRUE(file->Sync().ok());
  ASSERT_TRUE(file->Append(std::string(4, 'w')).ok());

  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_FALSE(Exists(dir_ / "tmp"));
  EXPECT_EQ(ReadWholeFile(dir_ / "final"), std::string(10, 's') + "uuuuu" + "vvv");
}

TEST_F(FaultInjectionFileSystemTest, RenamedNewFileStillNeedsItsDirectorySynced) {
  auto file = MustCreate(fs_, dir_ / "tmp");
  ASSERT_TRUE(file->Append("x").ok());
  ASSERT_TRUE(file->Sync().ok());
  ASSERT_TRUE(fs_.Rename(dir_ / "tmp", dir_ / "final").ok());
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_FALSE(Exists(dir_ / "final"));
}

TEST_F(FaultInjectionFileSystemTest, TruncateFileCountsAsSynced) {
  auto file = MustCreate(fs_, dir_ / "a");
  ASSERT_TRUE(fs_.SyncDir(dir_.path()).ok());
  ASSERT_TRUE(file->Append("0123456789").ok());
  ASSERT_TRUE(file->Sync().ok());
  ASSERT_TRUE(file->Close().ok());
  ASSERT_TRUE(fs_.TruncateFile(dir_ / "a", 4).ok());
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_EQ(ReadWholeFile(dir_ / "a"), "0123");
}

TEST_F(FaultInjectionFileSystemTest, FilesNotWrittenThroughItAreLeftAlone) {
  ASSERT_TRUE(MustCreate(*posix_, dir_ / "outside")->Append("kept").ok());
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_EQ(ReadWholeFile(dir_ / "outside"), "kept");
}

TEST_F(FaultInjectionFileSystemTest, FilesKeepWorkingAfterTheFileSystemObjectIsGone) {
  std::unique_ptr<WritableFile> file;
  {
    FaultInjectionFileSystem short_lived(*posix_);
    file = MustCreate(short_lived, dir_ / "a");
  }
  ASSERT_TRUE(file->Append("abc").ok());
  ASSERT_TRUE(file->Sync().ok());
  ASSERT_TRUE(file->Close().ok());
  EXPECT_EQ(ReadWholeFile(dir_ / "a"), "abc");
}

TEST_F(FaultInjectionFileSystemTest, PassesEverythingElseThrough) {
  ASSERT_TRUE(fs_.CreateDirs(dir_ / "d").ok());
  ASSERT_TRUE(MustCreate(fs_, dir_ / "d/f")->Append("abc").ok());
  Result<std::vector<std::string>> names = fs_.ListDir(dir_ / "d");
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"f"});
  Result<uint64_t> size = fs_.FileSize(dir_ / "d/f");
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, 3u);
  EXPECT_EQ(ReadThrough(fs_, dir_ / "d/f"), "abc");
  ASSERT_TRUE(fs_.Remove(dir_ / "d/f").ok());
  ASSERT_TRUE(fs_.DropUnsyncedData().ok()) << "a removed file is forgotten";
  EXPECT_FALSE(fs_.Remove(dir_ / "d/f").ok());
}

}  // namespace
}  // namespace tagcache::storage
