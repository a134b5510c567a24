#!/usr/bin/env bash
# Regenerates crates/kiban-deid/data/ipadic_names.tsv (surnames and given names) from Debian's
# mecab-ipadic sources (EUC-JP CSV).
# Not run by the build or by tests: the derived lists are committed with IPADIC's notice
# (crates/kiban-deid/data/IPADIC-NOTICE), so a fresh machine needs nothing installed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download mecab-ipadic >/dev/null && dpkg-deb -x mecab-ipadic_*.deb x)
dic="$work/x/usr/share/mecab/dic/ipadic"
out="$root/crates/kiban-deid/data"
{
  echo "# kind	kanji	katakana  (L surname, G given; from mecab-ipadic, see IPADIC-NOTICE)"
  iconv -f EUC-JP -t UTF-8 "$dic/Noun.name.csv" |
    awk -F, '$8=="姓"{print "L\t"$1"\t"$12} $8=="名"{print "G\t"$1"\t"$12}' | LC_ALL=C sort -u
} >"$out/ipadic_names.tsv"
cp "$work/x/usr/share/doc/mecab-ipadic/copyright" "$out/IPADIC-NOTICE"
