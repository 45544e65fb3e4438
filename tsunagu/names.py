"""Name data for generated estates: people, departments and places.

Only data lives here; `generate.py` decides how it is combined. Changing any list
changes every generated estate, including the checked-in examples (regenerate them).
"""

from __future__ import annotations

from typing import NamedTuple

# The most common family names in Japan, roughly in order of frequency.
FAMILY_NAMES = (
    "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤",
    "吉田", "山田", "佐々木", "山口", "松本", "井上", "木村", "林", "斎藤", "清水",
    "山崎", "森", "池田", "橋本", "阿部", "石川", "山下", "中島", "石井", "小川",
    "前田", "岡田", "長谷川", "藤田", "後藤", "近藤", "村上", "遠藤", "青木", "坂本",
    "斉藤", "福田", "太田", "西村", "藤井", "金子", "岡本", "藤原", "中野", "三浦",
    "原田", "中川", "松田", "竹内", "小野", "田村", "中山", "和田", "石田", "森田",
    "上田", "原", "内田", "柴田", "酒井", "宮崎", "横山", "高木", "安藤", "宮本",
    "大野", "小島", "谷口", "今井", "工藤", "高田", "増田", "丸山", "杉山", "村田",
    "大塚", "新井", "小山", "平野", "藤本", "河野", "上野", "野口", "武田", "松井",
    "千葉", "岩崎", "菅原", "木下", "久保", "佐野", "野村", "松尾", "市川", "菊地",
)

GIVEN_NAMES = (
    "大輔", "健太", "翔太", "拓也", "直樹", "和也", "達也", "誠", "浩二", "隆",
    "博之", "健一", "亮", "剛", "学", "修", "聡", "健二", "秀樹", "大介",
    "哲也", "雄一", "洋平", "雅人", "徹", "崇", "智之", "弘", "正人", "翔",
    "蓮", "悠斗", "陽翔", "湊", "大和", "悠真", "颯太", "陸", "海斗", "優太",
    "一郎", "健", "豊", "茂", "清", "勇", "進", "実", "昭", "明",
    "陽子", "恵子", "裕子", "美穂", "直美", "智子", "久美子", "由美", "真由美", "明美",
    "幸子", "京子", "洋子", "典子", "純子", "優子", "香織", "さゆり", "めぐみ", "愛",
    "彩", "美咲", "千尋", "麻衣", "舞", "沙織", "瞳", "遥", "葵", "結衣",
    "陽菜", "凛", "さくら", "美月", "七海", "花子", "和子", "節子", "弘子", "玲子",
    "由紀", "真理", "奈々", "理恵", "紀子", "友美", "佳奈", "綾香", "里美", "早紀",
)


class DepartmentKind(NamedTuple):
    """A department as the generator sees it.

    weight: relative head count; calls: busy-hour calls per staff member on the
    department's published number (counter departments take many, internal ones
    few); strategy: how its department number rings its members.
    """

    id: str
    name: str
    weight: float
    calls: float
    strategy: str


# City-hall departments, core ones first: a small city takes a prefix of this list,
# so every ring strategy appears within the first dozen.
CITY_HALL_DEPARTMENTS = (
    DepartmentKind("soumu", "総務課", 3, 0.3, "sequential"),
    DepartmentKind("shimin", "市民課", 6, 1.2, "longest_idle"),
    DepartmentKind("zeimu", "税務課", 5, 0.8, "rotation"),
    DepartmentKind("fukushi", "福祉課", 5, 0.7, "tiered"),
    DepartmentKind("kosodate", "子育て支援課", 4, 0.8, "tiered"),
    DepartmentKind("bousai", "防災危機管理課", 2, 0.4, "simultaneous"),
    DepartmentKind("hoken", "保険年金課", 5, 1.0, "longest_idle"),
    DepartmentKind("douro", "道路課", 4, 0.5, "sequential"),
    DepartmentKind("jougesuido", "上下水道課", 5, 0.8, "rotation"),
    DepartmentKind("kyouiku-soumu", "教育総務課", 3, 0.3, "sequential"),
    DepartmentKind("kikaku", "企画政策課", 2, 0.2, "simultaneous"),
    DepartmentKind("zaisei", "財政課", 2, 0.2, "simultaneous"),
    DepartmentKind("kaigo", "介護保険課", 4, 0.8, "tiered"),
    DepartmentKind("kenko", "健康推進課", 4, 0.6, "rotation"),
    DepartmentKind("kankyo", "環境衛生課", 3, 0.7, "rotation"),
    DepartmentKind("toshi", "都市計画課", 3, 0.4, "sequential"),
    DepartmentKind("nourin", "農林振興課", 3, 0.4, "sequential"),
    DepartmentKind("shoukou", "商工観光課", 3, 0.5, "simultaneous"),
    DepartmentKind("hisho", "秘書広報課", 2, 0.3, "simultaneous"),
    DepartmentKind("jinji", "人事課", 2, 0.2, "sequential"),
    DepartmentKind("kanzai", "管財課", 2, 0.3, "rotation"),
    DepartmentKind("gakkou", "学校教育課", 3, 0.4, "simultaneous"),
    DepartmentKind("shougai-gakushu", "生涯学習課", 2, 0.4, "simultaneous"),
    DepartmentKind("kaikei", "会計課", 2, 0.3, "sequential"),
    DepartmentKind("gikai", "議会事務局", 2, 0.2, "simultaneous"),
    DepartmentKind("senkyo", "選挙管理委員会事務局", 1, 0.2, "simultaneous"),
    DepartmentKind("kansa", "監査委員事務局", 1, 0.1, "simultaneous"),
    DepartmentKind("nougyo-iinkai", "農業委員会事務局", 1, 0.2, "simultaneous"),
    DepartmentKind("nouzei", "納税課", 3, 0.8, "longest_idle"),
    DepartmentKind("shisanzei", "資産税課", 3, 0.6, "rotation"),
    DepartmentKind("shogai", "障害福祉課", 4, 0.7, "tiered"),
    DepartmentKind("seikatsu", "生活支援課", 5, 0.7, "tiered"),
    DepartmentKind("hoiku", "保育課", 3, 0.7, "sequential"),
    DepartmentKind("kenchiku", "建築指導課", 3, 0.5, "longest_idle"),
    DepartmentKind("gomi", "廃棄物対策課", 2, 0.8, "rotation"),
    DepartmentKind("jouhou", "情報政策課", 2, 0.2, "rotation"),
    DepartmentKind("keiyaku", "契約課", 2, 0.3, "sequential"),
    DepartmentKind("jinken", "人権・男女共同参画課", 1, 0.2, "simultaneous"),
    DepartmentKind("shouhi", "消費生活センター", 1, 0.9, "longest_idle"),
    DepartmentKind("koutsu", "交通政策課", 2, 0.3, "simultaneous"),
    DepartmentKind("kouen", "公園課", 2, 0.4, "rotation"),
    DepartmentKind("juutaku", "市営住宅課", 2, 0.6, "rotation"),
    DepartmentKind("kaihatsu", "開発調整課", 2, 0.3, "sequential"),
    DepartmentKind("chiiki", "地域振興課", 2, 0.3, "simultaneous"),
    DepartmentKind("kokusai", "国際交流課", 1, 0.2, "simultaneous"),
    DepartmentKind("sports", "スポーツ課", 2, 0.3, "simultaneous"),
    DepartmentKind("bunka", "文化振興課", 2, 0.2, "simultaneous"),
    DepartmentKind("kodomo-soudan", "こども家庭相談課", 3, 0.6, "tiered"),
    DepartmentKind("koureisha", "高齢者支援課", 3, 0.7, "tiered"),
    DepartmentKind("iryou", "地域医療課", 2, 0.4, "sequential"),
    DepartmentKind("eisei", "生活衛生課", 2, 0.4, "sequential"),
    DepartmentKind("saiken", "債権管理課", 2, 0.5, "rotation"),
    DepartmentKind("kyushoku", "学校給食課", 2, 0.3, "simultaneous"),
    DepartmentKind("shisetsu", "教育施設課", 2, 0.3, "sequential"),
    DepartmentKind("dx", "DX推進課", 2, 0.2, "rotation"),
)

# Departments of a ward office (区役所); ids and names get the ward as a prefix.
WARD_DEPARTMENTS = (
    DepartmentKind("kusei", "区政策課", 2, 0.4, "sequential"),
    DepartmentKind("kumin", "区民課", 6, 1.2, "longest_idle"),
    DepartmentKind("hoken", "保険年金課", 4, 1.0, "longest_idle"),
    DepartmentKind("kodomo", "こども家庭課", 4, 0.7, "tiered"),
    DepartmentKind("koureisha", "高齢・障害者相談課", 4, 0.7, "tiered"),
    DepartmentKind("seikatsu", "生活支援課", 4, 0.6, "rotation"),
    DepartmentKind("chiiki", "地域振興課", 2, 0.3, "simultaneous"),
)

# A branch office or community centre is one department named after its site.
BRANCH_DEPARTMENT = DepartmentKind("branch", "支所", 1, 0.6, "simultaneous")
COMMUNITY_CENTRE_DEPARTMENT = DepartmentKind("centre", "公民館", 0.3, 0.4, "simultaneous")

# (kanji, romaji) of fictional neighbourhoods that branch sites are named after.
PLACES = (
    ("桜台", "sakuradai"), ("青葉", "aoba"), ("若葉", "wakaba"), ("緑ヶ丘", "midorigaoka"),
    ("旭町", "asahimachi"), ("本町", "honmachi"), ("松原", "matsubara"), ("杉山", "sugiyama"),
    ("川端", "kawabata"), ("大野", "oono"), ("上原", "uehara"), ("中川", "nakagawa"),
    ("東山", "higashiyama"), ("西原", "nishihara"), ("北野", "kitano"), ("南台", "minamidai"),
    ("栄町", "sakaemachi"), ("富士見", "fujimi"), ("日の出", "hinode"), ("朝日", "asahi"),
    ("宮下", "miyashita"), ("泉", "izumi"), ("清水", "shimizu"), ("高田", "takada"),
    ("白山", "hakusan"), ("光が丘", "hikarigaoka"), ("星野", "hoshino"), ("柳町", "yanagimachi"),
    ("梅田", "umeda"), ("竹原", "takehara"), ("池上", "ikegami"), ("森下", "morishita"),
)
