#!/usr/bin/env bash
# check_sql.sh: no SQL text is built from runtime input (docs/security.md, "Injection,
# traversal and parsing limits").
#
# Scans every C++ source of the modules (<module>/src/*.cpp; not tests/ or build/) for calls
# that prepare or execute SQL:
#   x.prepare(SQL) x->prepare(SQL) x.exec(SQL) x->exec(SQL)     (telehub::sqlite::Database)
#   sqlite3_prepare*(db, SQL, ...) sqlite3_exec(db, SQL, ...)    (the SQLite C API)
#   and the local wrappers listed in WRAPPERS below, whose parameter is passed on as SQL.
# The SQL argument must be a string literal (adjacent literals and raw strings included) or a
# named constant kName declared const/constexpr in the same file. Anything else (a variable,
# '+' concatenation, std::to_string, a call) is reported unless ALLOWED below names that exact
# source line with a reason: the allow-list is for SQL composed from constants only, which a
# person has read. Values always go in through bind(), never into the text.
#
# Usage: scripts/check_sql.sh [repository root]. Prints every offending line as
# "file:line: text" and exits 1 if there is any; exits 0 otherwise. Registered as the ctest
# test sql_bound_parameters (tests/CMakeLists.txt).
set -euo pipefail

root="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
cd "$root"

# Local helpers that take SQL text and prepare/execute it: file|function|index of the SQL
# argument (0-based). Their call sites in that file are checked like prepare().
WRAPPERS='
storage/src/sqlite_store.cpp|scalar|1
privacy/src/identity_vault.cpp|run|0
bench/src/sqlite_append.cpp|exec|1
sqlite/src/sqlite.cpp|prepare|0
'

# Reviewed call sites whose SQL is not a single literal but is composed from constants only:
# file @@ source line (trimmed) @@ how many such lines in that file @@ why. A line that changes, or one
# more copy of it, is reported again.
ALLOWED='
sqlite/src/sqlite.cpp @@ if (auto s = d.exec(pragmas); !s) return core::fail(core::Code::kUnavailable, "db_open", s.error().message); @@ 1 @@ Database::open: pragmas is concatenated from literals chosen by the bool fields of OpenOptions.
sqlite/src/sqlite.cpp @@ auto st = prepare(sql); @@ 1 @@ Database::exec itself: passes its caller'"'"'s SQL on; every caller is checked here.
sqlite/src/sqlite.cpp @@ int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err); @@ 1 @@ Database::exec itself (multi-statement path); every caller is checked here.
sqlite/src/sqlite.cpp @@ int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt, nullptr); @@ 1 @@ Database::prepare itself; every caller is checked here.
privacy/src/identity_vault.cpp @@ auto st = db_.prepare(sql); @@ 1 @@ the run() wrapper; its callers are checked (WRAPPERS) and pass literals from a fixed list.
privacy/src/identity_vault.cpp @@ auto s = run(sql, subject_id); @@ 1 @@ erase(): sql iterates over a braced list of three DELETE literals; the subject id is bound.
storage/src/sqlite_store.cpp @@ auto chunks = db.prepare(sql); @@ 1 @@ chunk query: literals only, choosing "code=?2" or "?2 IS NULL"; the code is bound.
storage/src/sqlite_store.cpp @@ auto st = db.prepare(sql); @@ 1 @@ the scalar() wrapper; its callers are checked (WRAPPERS).
storage/src/sqlite_store.cpp @@ auto st = db.prepare(std::string(kDeviceColumns) + "WHERE id=?1"); @@ 1 @@ the constant column list plus a literal WHERE; the id is bound.
storage/src/sqlite_store.cpp @@ auto st = db.prepare(std::string(kDeviceColumns) + "WHERE subject=?1 ORDER BY id"); @@ 1 @@ the constant column list plus a literal WHERE; the subject is bound.
storage/src/sqlite_store.cpp @@ auto st = db.prepare(std::string(kQuarantineColumns) + "ORDER BY id DESC LIMIT ?1"); @@ 1 @@ the constant column list plus a literal tail; the limit is bound.
storage/src/sqlite_store.cpp @@ auto st = db.prepare(std::string(kQuarantineColumns) + "WHERE id=?1"); @@ 1 @@ the constant column list plus a literal WHERE; the id is bound.
storage/src/sqlite_store.cpp @@ if (s) s = db.exec("INSERT INTO schema_version(version) VALUES(" + std::to_string(kSchemaVersion) + ")"); @@ 1 @@ kSchemaVersion is a constexpr integer of this file.
storage/src/sqlite_store.cpp @@ if (auto s = db->exec("PRAGMA wal_autocheckpoint=" + std::to_string(kWriterCheckpointPages)); !s) @@ 1 @@ kWriterCheckpointPages is a constexpr integer of this file (PRAGMA takes no bound parameters).
storage/src/sqlite_store.cpp @@ if (auto s = db.exec(sql); !s) return s; @@ 3 @@ schema migrations: sql iterates over braced lists of ALTER/DROP literals.
bench/src/sqlite_append.cpp @@ if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) { @@ 1 @@ the benchmark'"'"'s exec() wrapper; its callers are checked (WRAPPERS).
bench/src/sqlite_append.cpp @@ if (!exec(db, "PRAGMA journal_mode=WAL") || !exec(db, "PRAGMA synchronous=" + sync) || @@ 1 @@ sync is checked against the literals FULL, NORMAL and OFF just before; benchmark tool, not the hub.
'

mapfile -t files < <(find . -mindepth 3 -maxdepth 3 -path './*/src/*.cpp' -not -path './build*/*' -not -path './tests/*' \
  -not -path './.git/*' | sed 's|^\./||' | sort)
if [ "${#files[@]}" -eq 0 ]; then
  echo "check_sql.sh: no sources found under $root/*/src" >&2
  exit 2
fi

WRAPPERS="$WRAPPERS" ALLOWED="$ALLOWED" perl -e '
use strict;
use warnings;

my (%wrappers, %allowed);
for (split /\n/, $ENV{WRAPPERS}) {
  next unless /\S/;
  my ($file, $fn, $idx) = split /\|/, $_;
  $wrappers{$file}{$fn} = $idx;
}
for (split /\n/, $ENV{ALLOWED}) {
  next unless /\S/;
  my ($file, $line, $count) = split / \@\@ /, $_;
  $allowed{$file}{$line} = $count;
}

# The text with comments blanked and every string/char literal replaced by "" (raw strings
# included), newlines kept so that offsets map to the same lines.
sub mask {
  my ($s) = @_;
  my $out = "";
  my $n = length $s;
  my $i = 0;
  while ($i < $n) {
    my $c = substr($s, $i, 1);
    my $two = substr($s, $i, 2);
    if ($two eq "//") {
      my $e = index($s, "\n", $i);
      $e = $n if $e < 0;
      $out .= " " x ($e - $i);
      $i = $e;
    } elsif ($two eq "/*") {
      my $e = index($s, "*/", $i + 2);
      $e = $e < 0 ? $n : $e + 2;
      (my $blank = substr($s, $i, $e - $i)) =~ s/[^\n]/ /g;
      $out .= $blank;
      $i = $e;
    } elsif (substr($s, $i) =~ /^((?:u8|u|U|L)?R)"([^(\s]{0,16})\(/ && ($i == 0 || substr($s, $i - 1, 1) !~ /\w/)) {
      my $close = ")" . $2 . "\"";
      my $e = index($s, $close, $i);
      $e = $e < 0 ? $n : $e + length $close;
      (my $nl = substr($s, $i, $e - $i)) =~ s/[^\n]//g;
      $out .= "\"\"" . $nl;
      $i = $e;
    } elsif ($c eq "\"") {
      my $j = $i + 1;
      while ($j < $n && substr($s, $j, 1) ne "\"") { $j += substr($s, $j, 1) eq "\\" ? 2 : 1; }
      $out .= "\"\"";
      $i = $j + 1;
    } elsif ($c eq "'"'"'" && !($i > 0 && substr($s, $i - 1, 1) =~ /[0-9A-Fa-f]/)) {
      my $j = $i + 1;
      while ($j < $n && substr($s, $j, 1) ne "'"'"'") { $j += substr($s, $j, 1) eq "\\" ? 2 : 1; }
      $out .= "'"'"' '"'"'";
      $i = $j + 1;
    } else {
      $out .= $c;
      ++$i;
    }
  }
  return $out;
}

# Top-level arguments of the call whose "(" is at $open; undef when unbalanced.
sub call_args {
  my ($m, $open) = @_;
  my ($depth, $start, @args) = (0, $open + 1);
  for (my $i = $open; $i < length $m; ++$i) {
    my $c = substr($m, $i, 1);
    if ($c eq "(" || $c eq "[" || $c eq "{") { ++$depth; }
    elsif ($c eq ")" || $c eq "]" || $c eq "}") {
      --$depth;
      if ($depth == 0) { push @args, substr($m, $start, $i - $start); return (\@args, $i); }
    } elsif ($c eq "," && $depth == 1) { push @args, substr($m, $start, $i - $start); $start = $i + 1; }
  }
  return;
}

my $bad = 0;
for my $file (@ARGV) {
  open my $fh, "<", $file or die "$file: $!";
  my $src = do { local $/; <$fh> };
  close $fh;
  my @lines = split /\n/, $src, -1;
  my $m = mask($src);
  my %used;
  my $fns = join "|", map { quotemeta } sort keys %{ $wrappers{$file} // {} };
  my $sinks = qr/(?:(?:\.|->)\s*(?<fn>prepare|exec)|(?<![\w.>:])(?<fn>sqlite3_prepare\w*|sqlite3_exec))/;
  $sinks = qr/$sinks|(?<![\w.>:])(?<fn>$fns)/ if $fns ne "";
  while ($m =~ /$sinks\s*\(/g) {
    my ($fn, $start, $open) = ($+{fn}, $-[0], pos($m) - 1);
    my $index = $fn =~ /^sqlite3_/ ? 1 : ($wrappers{$file}{$fn} // 0);
    $index = 0 if substr($m, $start, 1) =~ /[.-]/;  # a method call: the SQL comes first
    my ($args, $close) = call_args($m, $open);
    my $line_no = 1 + (substr($m, 0, $start) =~ tr/\n//);
    next unless $args;
    my $arg = $args->[$index] // "";
    $arg =~ s/\s+/ /g;
    $arg =~ s/^ | $//g;
    # A declaration or definition of the function (parameters with types), not a call.
    my $after = substr($m, $close + 1, 40);
    next if $arg =~ /^(?:const )?[\w:<>]+(?: ?[&*])? ?[&*]?\w+(?: ?=.*)?$/ && $arg =~ /\w[\s&*]+[&*]?\w/;
    next if $arg =~ /^(?:"" ?)+$/;                       # string literal(s)
    if ($arg =~ /^k[A-Z]\w*$/) {                          # a named constant of this file
      next if $m =~ /\b(?:constexpr|const)\b[^;=]*\b\Q$arg\E\s*(?:\[\])?\s*=/;
    }
    (my $text = $lines[$line_no - 1]) =~ s/^\s+|\s+$//g;
    if (exists $allowed{$file}{$text} && ++$used{$text} <= $allowed{$file}{$text}) { next; }
    print "$file:$line_no: $text\n";
    $bad = 1;
  }
  for my $text (sort keys %{ $allowed{$file} // {} }) {
    my $n = $used{$text} // 0;
    print STDERR "check_sql.sh: note: $file: allowed line used $n of $allowed{$file}{$text} times: $text\n"
      if $n != $allowed{$file}{$text};
  }
}
if ($bad) {
  print STDERR "check_sql.sh: SQL text above is not a literal or constant. Bind values with ?N instead of\n",
               "building SQL; if the text is composed from constants only, add the line to ALLOWED with the reason.\n";
}
exit $bad;
' "${files[@]}"
