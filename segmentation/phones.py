"""Phone numbers: E.164 normalisation and location (country, area code, region, time zone).

Numbers are parsed and validated with ``phonenumbers`` (Google libphonenumber metadata); national
formats ("(212) 555-0123", "07911 123456") need a default region (ISO 3166-1 alpha-2).

Time-zone precedence (segmentation-compliance.md §5.2, §6.2):

1. ``explicit`` — a zone the subscriber or the operator gave (validated against the IANA database);
2. ``postal`` / ``region`` — a postal code (US ZIP by 3-digit USPS prefix, Canadian by first
   letter, Australian by range -> state), else a state/province
   code (``"TX"``, ``"US-TX"``, ``"ON"``, ``"NSW"``) -> that region's zones;
3. ``area_code`` — libphonenumber's zones for the number's prefix (exact for most NANP area codes);
4. ``country`` — the country has a single zone.

When the deciding source names several zones (an area code or state that spans zones, a US toll
free or non-geographic number, Australia mobile numbers...) the number is *ambiguous*: every
candidate is kept in ``tz_candidates`` and the documented default is chosen —
:data:`COUNTRY_DEFAULT_TZ` for the country when it is a candidate (the zone most of its people
live in), else the region's first (predominant) zone, else the alphabetically first candidate —
and ``tz_source`` is ``"default"`` (for region/postal ambiguity the region's predominant zone is
chosen and the source stays ``"region"``/``"postal"``, with the candidates kept). The send-time
quiet-hours gate should apply the strictest window over ``tz_candidates`` when present.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from dataclasses import dataclass

import phonenumbers
from phonenumbers import timezone as pn_timezone

from gateway.errors import SmsgateError
from segmentation.nanp_regions import NANP_REGION

_UNKNOWN_TZ = "Etc/Unknown"  # what libphonenumber answers when it has no zone for a prefix


class PhoneError(SmsgateError, ValueError):
    """A phone number (or a location hint next to it) that cannot be used; ``value`` is it."""

    def __init__(self, value: str, why: str) -> None:
        super().__init__(f"{value!r}: {why}")
        self.value = value
        self.why = why


def normalise(raw: str, default_region: str | None = None) -> str:
    """Return ``raw`` as E.164 (``+14155550123``) or raise :class:`PhoneError` naming it."""
    if not isinstance(raw, str):
        raise PhoneError(str(raw), "expected text")
    return _normalise(raw, default_region.upper() if default_region else None)


@functools.lru_cache(maxsize=8192)
def _normalise(raw: str, region: str | None) -> str:
    # Cached: libphonenumber validation costs ~100 us and the same number is often normalised
    # several times in one flow (ingest -> subscriber creation). Errors are not cached.
    text = raw.strip()
    if not text:
        raise PhoneError(raw, "empty phone number")
    if text.startswith("00"):
        text = "+" + text[2:]  # international prefix used across most of Europe
    if not text.startswith("+") and region is None:
        raise PhoneError(raw, "national format needs a default region (or give it as +CC...)")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise PhoneError(raw, f"not a phone number ({exc._msg})") from None
    if not phonenumbers.is_possible_number(number):
        raise PhoneError(raw, "wrong length for its country")
    if not phonenumbers.is_valid_number(number):
        raise PhoneError(raw, "not a valid number in its country's numbering plan")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# Predominant zone per country (the one most people live in), used to pick among candidates.
COUNTRY_DEFAULT_TZ: dict[str, str] = {
    "US": "America/New_York",
    "CA": "America/Toronto",
    "AU": "Australia/Sydney",
    "BR": "America/Sao_Paulo",
    "MX": "America/Mexico_City",
    "RU": "Europe/Moscow",
    "ID": "Asia/Jakarta",
    "GB": "Europe/London",
    "ES": "Europe/Madrid",
    "PT": "Europe/Lisbon",
    "AR": "America/Argentina/Buenos_Aires",
    "CL": "America/Santiago",
    "KZ": "Asia/Almaty",
    "CD": "Africa/Kinshasa",
    "NZ": "Pacific/Auckland",
}

# US states and territories, Canadian provinces, Australian states -> zones, predominant first.
# States split between zones list every zone so a matching area code can pick the exact one.
REGION_TZ: dict[str, dict[str, tuple[str, ...]]] = {
    "US": {
        "AL": ("America/Chicago",), "AK": ("America/Anchorage", "America/Adak"),
        "AZ": ("America/Phoenix",), "AR": ("America/Chicago",),
        "CA": ("America/Los_Angeles",), "CO": ("America/Denver",),
        "CT": ("America/New_York",), "DE": ("America/New_York",), "DC": ("America/New_York",),
        "FL": ("America/New_York", "America/Chicago"), "GA": ("America/New_York",),
        "HI": ("Pacific/Honolulu",), "ID": ("America/Boise", "America/Los_Angeles"),
        "IL": ("America/Chicago",),
        "IN": ("America/Indiana/Indianapolis", "America/Chicago"),
        "IA": ("America/Chicago",), "KS": ("America/Chicago", "America/Denver"),
        "KY": ("America/New_York", "America/Chicago"), "LA": ("America/Chicago",),
        "ME": ("America/New_York",), "MD": ("America/New_York",), "MA": ("America/New_York",),
        "MI": ("America/Detroit", "America/Chicago"), "MN": ("America/Chicago",),
        "MS": ("America/Chicago",), "MO": ("America/Chicago",), "MT": ("America/Denver",),
        "NE": ("America/Chicago", "America/Denver"), "NV": ("America/Los_Angeles",),
        "NH": ("America/New_York",), "NJ": ("America/New_York",), "NM": ("America/Denver",),
        "NY": ("America/New_York",), "NC": ("America/New_York",),
        "ND": ("America/Chicago", "America/Denver"), "OH": ("America/New_York",),
        "OK": ("America/Chicago",), "OR": ("America/Los_Angeles", "America/Boise"),
        "PA": ("America/New_York",), "RI": ("America/New_York",), "SC": ("America/New_York",),
        "SD": ("America/Chicago", "America/Denver"),
        "TN": ("America/Chicago", "America/New_York"),
        "TX": ("America/Chicago", "America/Denver"), "UT": ("America/Denver",),
        "VT": ("America/New_York",), "VA": ("America/New_York",),
        "WA": ("America/Los_Angeles",), "WV": ("America/New_York",), "WI": ("America/Chicago",),
        "WY": ("America/Denver",), "PR": ("America/Puerto_Rico",), "GU": ("Pacific/Guam",),
        "VI": ("America/St_Thomas",),
    },
    "CA": {
        "AB": ("America/Edmonton",), "BC": ("America/Vancouver",), "MB": ("America/Winnipeg",),
        "NB": ("America/Moncton",), "NL": ("America/St_Johns",), "NS": ("America/Halifax",),
        "NT": ("America/Edmonton",), "NU": ("America/Iqaluit",), "ON": ("America/Toronto",),
        "PE": ("America/Halifax",), "QC": ("America/Toronto",), "SK": ("America/Regina",),
        "YT": ("America/Whitehorse",),
    },
    "AU": {
        "NSW": ("Australia/Sydney",), "ACT": ("Australia/Sydney",),
        "VIC": ("Australia/Melbourne",), "QLD": ("Australia/Brisbane",),
        "SA": ("Australia/Adelaide",), "WA": ("Australia/Perth",),
        "TAS": ("Australia/Hobart",), "NT": ("Australia/Darwin",),
    },
}

# USPS 3-digit ZIP prefix ranges -> state (inclusive). A handful of prefixes near state lines
# also serve a neighbour; the state given explicitly always wins over this table.
_ZIP3_STATE: tuple[tuple[int, int, str], ...] = (
    (5, 5, "NY"), (6, 7, "PR"), (8, 8, "VI"), (9, 9, "PR"), (10, 27, "MA"), (28, 29, "RI"),
    (30, 38, "NH"), (39, 49, "ME"), (50, 54, "VT"), (55, 55, "MA"), (56, 59, "VT"),
    (60, 69, "CT"), (70, 89, "NJ"), (100, 149, "NY"), (150, 196, "PA"), (197, 199, "DE"),
    (200, 205, "DC"), (206, 219, "MD"), (220, 246, "VA"), (247, 268, "WV"), (270, 289, "NC"),
    (290, 299, "SC"), (300, 319, "GA"), (320, 349, "FL"), (350, 369, "AL"), (370, 385, "TN"),
    (386, 397, "MS"), (398, 399, "GA"), (400, 427, "KY"), (430, 459, "OH"), (460, 479, "IN"),
    (480, 499, "MI"), (500, 528, "IA"), (530, 549, "WI"), (550, 567, "MN"), (569, 569, "DC"),
    (570, 577, "SD"), (580, 588, "ND"), (590, 599, "MT"), (600, 629, "IL"), (630, 658, "MO"),
    (660, 679, "KS"), (680, 693, "NE"), (700, 714, "LA"), (716, 729, "AR"), (730, 732, "OK"),
    (733, 733, "TX"), (734, 749, "OK"),
    (750, 799, "TX"), (800, 816, "CO"), (820, 831, "WY"), (832, 838, "ID"), (840, 847, "UT"),
    (850, 865, "AZ"), (870, 884, "NM"), (885, 885, "TX"), (889, 898, "NV"), (900, 961, "CA"),
    (967, 968, "HI"), (969, 969, "GU"), (970, 979, "OR"), (980, 994, "WA"), (995, 999, "AK"),
)

_ZIP_RE = re.compile(r"^\s*(\d{5})(?:-\d{4})?\s*$")


def state_for_us_zip(postal_code: str) -> str | None:
    """The US state of a 5-digit ZIP (or ZIP+4), or None when it is not one we know."""
    m = _ZIP_RE.match(postal_code)
    if not m:
        return None
    prefix = int(m.group(1)[:3])
    for lo, hi, state in _ZIP3_STATE:
        if lo <= prefix <= hi:
            return state
    return None


# Canada Post: the first letter of a postal code (forward sortation area) names the province.
_CA_POSTAL_FIRST = {
    "A": "NL", "B": "NS", "C": "PE", "E": "NB", "G": "QC", "H": "QC", "J": "QC", "K": "ON",
    "L": "ON", "M": "ON", "N": "ON", "P": "ON", "R": "MB", "S": "SK", "T": "AB", "V": "BC",
    "X": "NT", "Y": "YT",
}
_CA_POSTAL_RE = re.compile(r"^\s*([A-Za-z])\d[A-Za-z]\s*\d[A-Za-z]\d\s*$")
# Australia Post: 4-digit postcodes, the state by leading digits (ACT ranges inside NSW's).
_AU_POSTCODE_STATE: tuple[tuple[int, int, str], ...] = (
    (800, 999, "NT"), (2600, 2618, "ACT"), (2900, 2920, "ACT"), (1000, 2999, "NSW"),
    (3000, 3999, "VIC"), (8000, 8999, "VIC"), (4000, 4999, "QLD"), (9000, 9999, "QLD"),
    (5000, 5999, "SA"), (6000, 6999, "WA"), (7000, 7999, "TAS"),
)


def region_for_postal_code(country: str | None, postal_code: str) -> tuple[str, str] | None:
    """(country, state/province) of a US ZIP, Canadian postal code or Australian postcode.

    ``country`` narrows the formats tried (None: US and Canadian, as for NANP numbers).
    """
    if country in ("US", None):
        state = state_for_us_zip(postal_code)
        if state is not None:
            return "US", state
    if country in ("CA", None):
        m = _CA_POSTAL_RE.match(postal_code)
        if m and m.group(1).upper() in _CA_POSTAL_FIRST:
            return "CA", _CA_POSTAL_FIRST[m.group(1).upper()]
    if country == "AU" and postal_code.strip().isdigit() and len(postal_code.strip()) == 4:
        code = int(postal_code.strip())
        for lo, hi, state in _AU_POSTCODE_STATE:  # first match wins: ACT before NSW
            if lo <= code <= hi:
                return "AU", state
    return None


@dataclass(frozen=True)
class Location:
    """Where a number (plus optional hints) places a subscriber."""

    country: str | None
    area_code: str | None
    region: str | None
    tz: str | None
    tz_source: str | None  # explicit | postal | region | area_code | country | default
    tz_candidates: tuple[str, ...] | None  # every candidate when ambiguous


def _valid_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _region_key(region: str, country: str | None) -> str:
    key = region.strip().upper()
    if country and key.startswith(country + "-"):  # ISO 3166-2 form, e.g. "US-TX"
        key = key[len(country) + 1:]
    return key


def _number_zones(number: phonenumbers.PhoneNumber, ntype: int, geographic: bool
                  ) -> tuple[str, ...]:
    # What pn_timezone.time_zones_for_number does, reusing the number type we already have.
    if ntype == phonenumbers.PhoneNumberType.UNKNOWN:
        return ()
    if not geographic:
        return _country_zones(number.country_code or 0)
    zones = pn_timezone.time_zones_for_geographical_number(number)
    return tuple(sorted({z for z in zones if z != _UNKNOWN_TZ}))


def _country_zones(country_code: int) -> tuple[str, ...]:
    # libphonenumber keeps country-level zones under the bare calling code.
    data: dict[str, tuple[str, ...]] = getattr(pn_timezone, "TIMEZONE_DATA", {})
    zones = data.get(str(country_code)) or ()
    return tuple(sorted(z for z in zones if z != _UNKNOWN_TZ))


def _pick_default(countries: tuple[str | None, ...], candidates: tuple[str, ...]) -> str:
    for country in countries:
        preferred = COUNTRY_DEFAULT_TZ.get(country or "")
        if preferred is not None and preferred in candidates:
            return preferred
    return candidates[0]


def locate(
    e164: str,
    *,
    tz: str | None = None,
    region: str | None = None,
    postal_code: str | None = None,
) -> Location:
    """Derive the location of an E.164 number, with hints taking precedence (module docstring)."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        raise PhoneError(e164, "not an E.164 number") from None
    # libphonenumber calls are costly (region and type matching run many regexes), so each
    # one is made once here and its result reused.
    cc = number.country_code or 0
    country = phonenumbers.region_code_for_number(number)
    if country is None:
        cc_region = phonenumbers.region_code_for_country_code(cc)
        country = cc_region if cc_region not in ("ZZ", "001") else None
    ntype = phonenumbers.number_type(number)
    geographic = phonenumbers.is_number_type_geographical(ntype, cc)
    nsn = phonenumbers.national_significant_number(number)
    # NANP numbers always have a 3-digit area code (NPA); elsewhere ask the metadata.
    ndc_len = 3 if cc == 1 else phonenumbers.length_of_national_destination_code(number)
    area_code = nsn[:ndc_len] if ndc_len > 0 else None

    region_out = _region_key(region, country) if region and region.strip() else None
    postal = None
    if postal_code:
        # A NANP subscriber may live in the US or Canada whatever the area code says.
        postal = region_for_postal_code(None if cc == 1 else country, postal_code)
    if region_out is None and postal is not None:
        region_out = postal[1]
    if region_out is None and cc == 1 and geographic and area_code:
        # The area code's state/province (libphonenumber's geocoding data, pre-digested).
        region_out = NANP_REGION.get(area_code)

    number_zones = _number_zones(number, ntype, geographic)

    def done(zone: str | None, source: str | None, cands: tuple[str, ...] | None) -> Location:
        return Location(country, area_code, region_out, zone, source,
                        cands if cands and len(cands) > 1 else None)

    if tz and tz.strip():
        if not _valid_zone(tz.strip()):
            raise PhoneError(tz, "unknown IANA time zone")
        return done(tz.strip(), "explicit", None)

    hints = [(country, region, "region")]
    if postal is not None:
        hints.append((postal[0], postal[1], "postal"))
    for hint_country, hint, source in hints:
        if not hint or not hint_country:
            continue
        zones = REGION_TZ.get(hint_country, {}).get(_region_key(hint, hint_country))
        if zones:
            # A state split between zones: the area code's zone when it is one of them.
            exact = [z for z in zones if z in number_zones]
            chosen = exact[0] if len(exact) == 1 else zones[0]
            return done(chosen, source, None if len(exact) == 1 else tuple(sorted(zones)))

    country_zones = _country_zones(cc)
    # "+44 7911..." is placed in GG by libphonenumber; the calling code's main country (GB)
    # still names the predominant zone.
    defaults = (country, phonenumbers.region_code_for_country_code(cc))
    if len(number_zones) == 1:
        source = "country" if number_zones == country_zones else "area_code"
        return done(number_zones[0], source, None)
    if number_zones:
        return done(_pick_default(defaults, number_zones), "default", number_zones)
    if len(country_zones) == 1:
        return done(country_zones[0], "country", None)
    if country_zones:
        return done(_pick_default(defaults, country_zones), "default", country_zones)
    return done(None, None, None)
