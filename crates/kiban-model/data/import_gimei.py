"""Regenerates the name and municipality lists from the `gimei` crate's data (MIT, (c) 2015 woxtu).

Run from this folder after `cargo fetch` has unpacked gimei 0.2.0:
    python3 import_gimei.py ~/.cargo/registry/src/*/gimei-0.2.0/src/data
Municipalities are in JIS code order there; each prefecture starts at its first-coded city,
which this script uses to attach the prefecture.
"""
import re, sys

src = sys.argv[1]
row = re.compile(r"^\s+- \['([^']*)', '([^']*)', '([^']*)'\]")

def section(path, start, stop=None):
    out, on = [], False
    for line in open(path, encoding="utf-8"):
        if re.match(r"^\s*" + start + r":\s*$", line):
            on = True
            continue
        if on and stop and re.match(r"^\s*" + stop + r":\s*$", line):
            break
        m = row.match(line)
        if on and m:
            out.append((m.group(1), m.group(3)))
    return out

names = f"{src}/names.yml"
with open("names.tsv", "w", encoding="utf-8") as f:
    f.write("# kind\tkanji\tkatakana  (from gimei, MIT, (c) 2015 woxtu)\n")
    for kind, rows in (("M", section(names, "male", "female")), ("F", section(names, "female", "last_name")), ("L", section(names, "last_name"))):
        for k, kana in rows:
            f.write(f"{kind}\t{k}\t{kana}\n")

FIRST = ["札幌市中央区", "青森市", "盛岡市", "仙台市青葉区", "秋田市", "山形市", "福島市", "水戸市", "宇都宮市", "前橋市",
         "さいたま市西区", "千葉市中央区", "千代田区", "横浜市鶴見区", "新潟市北区", "富山市", "金沢市", "福井市", "甲府市",
         "長野市", "岐阜市", "静岡市葵区", "名古屋市千種区", "津市", "大津市", "京都市北区", "大阪市都島区", "神戸市東灘区",
         "奈良市", "和歌山市", "鳥取市", "松江市", "岡山市北区", "広島市中区", "下関市", "徳島市", "高松市", "松山市", "高知市",
         "北九州市門司区", "佐賀市", "長崎市", "熊本市中央区", "大分市", "宮崎市", "鹿児島市", "那覇市"]
addr = f"{src}/addresses.yml"
prefs = section(addr, "prefecture", "city")
cities = section(addr, "city", "town")
assert len(prefs) == 47, len(prefs)
starts = [next(i for i, (k, _) in enumerate(cities) if k == name) for name in FIRST]
assert starts == sorted(starts), "prefecture boundaries out of order"
with open("municipalities.tsv", "w", encoding="utf-8") as f:
    f.write("# pref_code\tprefecture\tprefecture_kana\tmunicipality\tmunicipality_kana  (from gimei, MIT, (c) 2015 woxtu)\n")
    for p, (pk, pkana) in enumerate(prefs):
        end = starts[p + 1] if p + 1 < 47 else len(cities)
        for ck, ckana in cities[starts[p]:end]:
            f.write(f"{p+1:02}\t{pk}\t{pkana}\t{ck}\t{ckana}\n")
with open("towns.tsv", "w", encoding="utf-8") as f:
    f.write("# kanji\tkatakana  (from gimei, MIT, (c) 2015 woxtu)\n")
    for k, kana in section(addr, "town"):
        f.write(f"{k}\t{kana}\n")
