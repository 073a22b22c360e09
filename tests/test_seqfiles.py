import io
import zipfile

import numpy as np
import pytest

from seqlstm.data.seqfiles import RawSequences, read_sequences
from seqlstm.errors import DataError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def assert_sequences(result, values, lengths, labels):
    assert isinstance(result, RawSequences)
    assert result.values.dtype == np.float32 and result.lengths.dtype == np.int64
    np.testing.assert_array_equal(result.values, np.array(values, dtype=np.float32))
    np.testing.assert_array_equal(result.lengths, lengths)
    if labels is None:
        assert result.labels is None
    else:
        assert result.labels.dtype == np.asarray(labels).dtype
        np.testing.assert_array_equal(result.labels, labels)


# --- dispatch ---------------------------------------------------------------------------------


def test_unsupported_extension_lists_the_supported_ones(tmp_path):
    path = write(tmp_path, "data.txt", "1,2,3\n")
    with pytest.raises(DataError, match=r"data\.txt: unsupported extension '\.txt'; give a \.npz, \.ts, \.csv file"):
        read_sequences(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.ts: no such file"):
        read_sequences(tmp_path / "nope.ts")


@pytest.mark.parametrize("name", ["a.npz", "a.ts", "a.csv"])
def test_zero_byte_file_holds_no_sequences(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(DataError, match="the file is empty; it holds no sequences"):
        read_sequences(tmp_path / name)


def test_extension_is_case_insensitive_and_source_is_the_path_as_given(tmp_path):
    path = write(tmp_path, "UPPER.CSV", "a,1,2\n")
    result = read_sequences(str(path))
    assert result.source == str(path)
    assert_sequences(result, [[[1], [2]]], [2], np.array(["a"]))


def test_text_that_is_not_utf8(tmp_path):
    (tmp_path / "latin.csv").write_bytes("é,1,2\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin.csv: not UTF-8 text"):
        read_sequences(tmp_path / "latin.csv")


# --- .ts: what reads ----------------------------------------------------------------------------

UNIVARIATE = """\
#A description
#of two lines.
@problemName Tiny
@timeStamps false
@missing false
@univariate true
@equalLength true
@seriesLength 3
@classLabel true 1 2
@data
1.0,2.0,3.0:1
-4,5.5,6e1:2
"""


def test_ts_univariate_equal_length(tmp_path):
    result = read_sequences(write(tmp_path, "uni.ts", UNIVARIATE))
    assert_sequences(result, [[[1.0], [2.0], [3.0]], [[-4.0], [5.5], [60.0]]], [3, 3], np.array(["1", "2"]))


MULTIVARIATE_UNEQUAL = """\
@problemName Moves
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true walking running
@data
1,2,3:10,20,30:walking
4:40:running
5,6:50,60:walking
"""


def test_ts_multivariate_unequal_length_is_padded_with_zeros(tmp_path):
    result = read_sequences(write(tmp_path, "multi.ts", MULTIVARIATE_UNEQUAL))
    expected = [
        [[1, 10], [2, 20], [3, 30]],
        [[4, 40], [0, 0], [0, 0]],
        [[5, 50], [6, 60], [0, 0]],
    ]
    assert_sequences(result, expected, [3, 1, 2], np.array(["walking", "running", "walking"]))


def test_ts_comments_blank_lines_and_odd_key_spelling(tmp_path):
    text = (
        "# comment at the top\n"
        "\n"
        "@PROBLEMNAME  Odd\n"
        "# a comment between header lines\n"
        "@timestamps   FALSE\n"
        "@Univariate True\n"
        "\n"
        "@EQUALLENGTH\tfalse\n"
        "@classLabel TRUE  a   b\n"
        "@DATA\n"
        "\n"
        "  1,2:a  \n"
        "\n"
        "3: b\n"
        "\n"
    )
    result = read_sequences(write(tmp_path, "odd.ts", text))
    assert_sequences(result, [[[1], [2]], [[3], [0]]], [2, 1], np.array(["a", "b"]))


def test_ts_windows_line_endings(tmp_path):
    (tmp_path / "crlf.ts").write_bytes(b"@univariate true\r\n@classLabel true a\r\n@data\r\n1,2:a\r\n")
    assert_sequences(read_sequences(tmp_path / "crlf.ts"), [[[1], [2]]], [2], np.array(["a"]))


def test_ts_percent_comment_lines_as_in_aeon_test_files(tmp_path):
    text = "%# cut-down problem\n%\n@univariate true\n@classLabel true x\n@data\n7,8:x\n"
    assert_sequences(read_sequences(write(tmp_path, "pct.ts", text)), [[[7], [8]]], [2], np.array(["x"]))


def test_ts_class_label_false_returns_no_labels(tmp_path):
    text = "@univariate false\n@dimensions 2\n@equalLength true\n@classLabel false\n@data\n1,2:3,4\n5,6:7,8\n"
    result = read_sequences(write(tmp_path, "nolabel.ts", text))
    assert_sequences(result, [[[1, 3], [2, 4]], [[5, 7], [6, 8]]], [2, 2], None)


def test_ts_target_label_false_and_no_class_label_returns_no_labels(tmp_path):
    text = "@univariate true\n@targetLabel false\n@data\n1,2\n"
    assert_sequences(read_sequences(write(tmp_path, "cluster.ts", text)), [[[1], [2]]], [2], None)


def test_ts_dimension_singular_as_aeon_documents_it(tmp_path):
    text = "@univariate false\n@dimension 2\n@classLabel true a\n@data\n1:2:a\n"
    assert_sequences(read_sequences(write(tmp_path, "dim.ts", text)), [[[1, 2]]], [1], np.array(["a"]))


def test_ts_dimensions_taken_from_the_first_case_when_not_declared(tmp_path):
    text = "@univariate false\n@classLabel true a\n@data\n1:2:3:a\n4:5:6:a\n"
    result = read_sequences(write(tmp_path, "three.ts", text))
    assert_sequences(result, [[[1, 2, 3]], [[4, 5, 6]]], [1, 1], np.array(["a", "a"]))


def test_ts_missing_true_trailing_question_marks_shorten_unequal_cases(tmp_path):
    text = (
        "@missing true\n@univariate false\n@dimensions 2\n@equalLength false\n@classLabel true 0 1\n@data\n"
        "1,2,3:4,5,6:0\n"
        "7,?,?:8,?,?:1\n"
    )
    result = read_sequences(write(tmp_path, "gaps.ts", text))
    assert_sequences(result, [[[1, 4], [2, 5], [3, 6]], [[7, 8], [0, 0], [0, 0]]], [3, 1], np.array(["0", "1"]))


def test_ts_labels_keep_the_files_spelling(tmp_path):
    text = "@univariate true\n@classLabel true Standing walking 01\n@data\n1:Standing\n2:01\n3:walking\n"
    result = read_sequences(write(tmp_path, "spell.ts", text))
    np.testing.assert_array_equal(result.labels, np.array(["Standing", "01", "walking"]))


# --- .ts: what is refused -----------------------------------------------------------------------


# Bad .ts files and the error each must get (the message names the line and what is wrong).
TS_ERRORS = [
    pytest.param(
        "@problemName Stamps\n@timeStamps true\n@univariate true\n@classLabel true 1\n@data\n"
        "(2007-01-01 00:00:00,241.97),(2007-01-01 00:01:00,241.75):1\n",
        r"bad\.ts, line 2: timestamped series \(\(time,value\) pairs\) are not supported",
        id="timestamps-are-refused-at-their-header-line",
    ),
    pytest.param(
        "@univariate true\n@targetLabel true\n@data\n1,2:0.5\n",
        r"line 2: this file holds a regression target",
        id="regression-target-is-refused",
    ),
    pytest.param(
        "# c\n@univariate true\n@colour blue\n@data\n",
        r"line 3: unknown header key @colour",
        id="unknown-header-key",
    ),
    pytest.param(
        "@univariate true\n@classLabel true a\n1,2:a\n@data\n",
        r"line 3: a data line before @data",
        id="data-line-before-data",
    ),
    pytest.param(
        "# only a description\n@univariate true\n@classLabel true a\n",
        r"no @data line",
        id="no-data-line",
    ),
    pytest.param(
        "@classLabel true a\n@data 1,2\n",
        r"line 2: @data takes no value",
        id="data-with-a-value",
    ),
    pytest.param(
        "@univariate true\n@classLabel true\n@data\n1:a\n",
        r"line 2: @classLabel true lists no labels",
        id="class-label-true-without-labels",
    ),
    pytest.param(
        "@classLabel yes a b\n@data\n",
        r"line 1: @classLabel expects true followed by the labels",
        id="class-label-neither-true-nor-false",
    ),
    pytest.param(
        "@univariate true\n@data\n1,2:a\n",
        r"line 2: the header has no @classLabel line",
        id="header-without-class-label",
    ),
    pytest.param(
        "@equalLength true\n@seriesLength ten\n",
        r"line 2: @seriesLength expects a positive integer, got 'ten'",
        id="series-length-not-an-integer",
    ),
    pytest.param(
        "@problemName P\n@missing maybe\n",
        r"line 2: @missing expects true or false, got 'maybe'",
        id="non-boolean",
    ),
    pytest.param(
        "@univariate true\n@dimensions 3\n@classLabel false\n@data\n",
        r"line 2: @dimensions 3 contradicts",
        id="dimensions-contradict-univariate",
    ),
    pytest.param(
        "@univariate false\n@dimensions 2\n@classLabel true a\n@data\n1,2:3,4:a\n1,2:a\n",
        r"line 6: the case has 1 dimension\(s\) but 2 are expected",
        id="wrong-number-of-dimensions-against-the-header",
    ),
    pytest.param(
        "@univariate false\n@classLabel true a\n@data\n1:2:a\n1:2:3:a\n",
        r"line 5: the case has 3 dimension\(s\) but 2 are expected",
        id="wrong-number-of-dimensions-against-the-first-case",
    ),
    pytest.param(
        "@univariate true\n@classLabel true a b\n@data\n1,2:a\n3,4:c\n",
        r"line 5: label 'c' is not among the @classLabel values declared on line 2 \(a b\)",
        id="label-not-declared",
    ),
    pytest.param(
        "@univariate false\n@dimensions 2\n@classLabel true a\n@data\n1,2,3:4,x5,6:a\n",
        r"line 5: dimension 1, position 1: 'x5' is not a number",
        id="non-numeric-value-names-dimension-and-position",
    ),
    pytest.param(
        "@univariate true\n@classLabel true a\n@data\n?,oops:a\n",
        r"line 4: dimension 0, position 1: 'oops' is not a number",
        id="non-numeric-value-after-a-missing-one",
    ),
    pytest.param(
        "@missing true\n@univariate true\n@equalLength false\n@classLabel true a\n@data\n1,?,3:a\n",
        r"line 6: dimension 0, position 1: missing \(\?\), NaN or infinite value \(1 in",
        id="missing-value-inside-a-case",
    ),
    pytest.param(
        "@missing true\n@univariate true\n@equalLength true\n@classLabel true a\n@data\n1,2,3:a\n4,?,?:a\n",
        r"line 7: dimension 0, position 1: missing \(\?\), NaN or infinite value \(2 in",
        id="trailing-missing-is-an-error-in-equal-length-files",
    ),
    pytest.param(
        "@univariate true\n@equalLength true\n@seriesLength 3\n@classLabel true a\n@data\n1,2,3:a\n1,2:a\n",
        r"line 7: the case has 2 values per dimension but the series length is 3",
        id="case-length-differs-from-series-length",
    ),
    pytest.param(
        "@univariate true\n@equalLength true\n@classLabel true a\n@data\n1,2,3:a\n1,2,3,4:a\n",
        r"line 6: the case has 4 values per dimension but the series length is 3",
        id="equal-length-without-series-length-uses-the-first-case",
    ),
    pytest.param(
        "@univariate false\n@dimensions 2\n@equalLength false\n@classLabel true a\n@data\n1,2,3:4,5:a\n",
        r"line 6: the dimensions have different lengths \(3, 2\)",
        id="dimensions-of-one-case-disagree",
    ),
    pytest.param(
        "@univariate true\n@classLabel true a\n@data\n\n\n",
        r"no cases after @data \(line 3\); the file holds no sequences",
        id="no-cases-after-data",
    ),
    pytest.param(
        "@univariate true\n@classLabel true a\n@data\n1,2,3\n",
        r"line 4: no class label",
        id="case-without-label",
    ),
]


@pytest.mark.parametrize("text, match", TS_ERRORS)
def test_ts_error(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        read_sequences(write(tmp_path, "bad.ts", text))


# --- .npz ---------------------------------------------------------------------------------------


def test_npz_two_dimensional_x_is_one_feature(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.array([[1, 2, 3], [4, 5, 6]]), y=np.array([0, 1]))
    result = read_sequences(tmp_path / "a.npz")
    assert_sequences(result, [[[1], [2], [3]], [[4], [5], [6]]], [3, 3], np.array([0, 1], dtype=np.int64))


def test_npz_three_dimensional_x_with_string_labels(tmp_path):
    x = np.arange(2 * 2 * 3, dtype=np.float64).reshape(2, 2, 3)
    np.savez(tmp_path / "a.npz", X=x, y=np.array(["cat", "dog"]))
    result = read_sequences(tmp_path / "a.npz")
    assert_sequences(result, x, [2, 2], np.array(["cat", "dog"]))


def test_npz_without_y_has_no_labels(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.ones((1, 2, 1)))
    assert read_sequences(tmp_path / "a.npz").labels is None


def test_npz_whole_float_labels_become_integers(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.ones((2, 1)), y=np.array([3.0, 1.0]))
    np.testing.assert_array_equal(read_sequences(tmp_path / "a.npz").labels, np.array([3, 1], dtype=np.int64))


def test_npz_lengths_and_nan_in_the_padding_become_zeros(tmp_path):
    x = np.array([[[1.0], [2.0], [np.nan]], [[3.0], [np.inf], [-np.inf]]])
    np.savez(tmp_path / "a.npz", X=x, y=np.array([1, 0]), lengths=np.array([2, 1]))
    result = read_sequences(tmp_path / "a.npz")
    assert_sequences(result, [[[1], [2], [0]], [[3], [0], [0]]], [2, 1], np.array([1, 0], dtype=np.int64))


def test_npz_nan_inside_a_sequence_says_where_and_how_many(tmp_path):
    x = np.zeros((3, 4, 2))
    x[1, 3, 0] = np.nan
    x[2, 0, 1] = np.inf
    x[0, 3, 1] = np.nan  # padding: sequence 0 has length 3
    np.savez(tmp_path / "a.npz", X=x, y=np.zeros(3, int), lengths=np.array([3, 4, 4]))
    with pytest.raises(DataError, match=r"X has 2 NaN or infinite value\(s\).*first at sequence 1, step 3, feature 0"):
        read_sequences(tmp_path / "a.npz")


def test_npz_value_too_large_for_float32_is_reported_where_it_is(tmp_path):
    x = np.zeros((2, 3))
    x[0, 2] = 1e39
    np.savez(tmp_path / "a.npz", X=x, y=np.array([0, 1]))
    with pytest.raises(DataError, match=r"X has 1 NaN or infinite .* at sequence 0, step 2, feature 0"):
        read_sequences(tmp_path / "a.npz")


def test_npz_ragged_object_array(tmp_path):
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros(3), np.zeros(5)
    np.savez(tmp_path / "a.npz", X=ragged, y=np.array([0, 1]))
    with pytest.raises(DataError, match=r"array X is ragged / holds Python objects.*lengths=lengths"):
        read_sequences(tmp_path / "a.npz")


def test_npz_without_x_lists_the_arrays_there(tmp_path):
    np.savez(tmp_path / "a.npz", data=np.zeros((2, 3)), y=np.zeros(2))
    with pytest.raises(DataError, match=r"no array named X \(arrays in the file: data, y\)"):
        read_sequences(tmp_path / "a.npz")


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4, 5)])
def test_npz_x_of_wrong_ndim(tmp_path, shape):
    np.savez(tmp_path / "a.npz", X=np.zeros(shape))
    with pytest.raises(DataError, match=rf"X has shape \({shape[0]},.*expected \(N, T, F\)"):
        read_sequences(tmp_path / "a.npz")


def test_npz_with_no_sequences(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.zeros((0, 5)))
    with pytest.raises(DataError, match="it holds no sequences"):
        read_sequences(tmp_path / "a.npz")


@pytest.mark.parametrize(
    "y, match",
    [
        (np.zeros((3, 1)), r"y has shape \(3, 1\); expected \(3,\)"),
        (np.zeros(2), r"y has shape \(2,\); expected \(3,\)"),
        (np.array([0.0, 1.5, 2.0]), r"y\[1\] is 1\.5; labels must be integers or strings"),
    ],
)
def test_npz_bad_labels(tmp_path, y, match):
    np.savez(tmp_path / "a.npz", X=np.zeros((3, 2)), y=y)
    with pytest.raises(DataError, match=match):
        read_sequences(tmp_path / "a.npz")


@pytest.mark.parametrize(
    "lengths, match",
    [
        (np.array([1, 2]), r"lengths has shape \(2,\); expected \(3,\)"),
        (np.array([1.0, 2.5, 1.0]), r"lengths\[1\] is 2\.5; lengths must be whole numbers"),
        (np.array(["1", "2", "3"]), r"lengths has dtype <U1; expected integers"),
        (np.array([1, 0, 2]), r"sequence 1 has length 0; every sequence needs at least 1 step"),
        (np.array([1, 2, 40]), r"sequence 2 has length 40 but X holds only 32 steps"),
    ],
)
def test_npz_bad_lengths(tmp_path, lengths, match):
    np.savez(tmp_path / "a.npz", X=np.zeros((3, 32)), y=np.zeros(3, int), lengths=lengths)
    with pytest.raises(DataError, match=match):
        read_sequences(tmp_path / "a.npz")


def test_npz_truncated_archive(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.zeros((10, 20)), y=np.zeros(10, int))
    data = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "a.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"a\.npz: the file is damaged or not a \.npz archive"):
        read_sequences(tmp_path / "a.npz")


def test_npz_member_shorter_than_its_header(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.npz", "w") as archive:
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((4, 5)))
        archive.writestr("X.npy", buffer.getvalue()[:-16])
    with pytest.raises(DataError, match=r"the file is damaged or not a \.npz archive"):
        read_sequences(tmp_path / "a.npz")


def test_npz_that_is_text(tmp_path):
    write(tmp_path, "a.npz", "label,1,2\n")
    with pytest.raises(DataError, match=r"the file is damaged or not a \.npz archive"):
        read_sequences(tmp_path / "a.npz")


def test_npy_named_npz(tmp_path):
    with (tmp_path / "a.npz").open("wb") as f:
        np.save(f, np.zeros((2, 3)))
    with pytest.raises(DataError, match=r"a single \.npy array, not a \.npz archive"):
        read_sequences(tmp_path / "a.npz")


# --- .csv ---------------------------------------------------------------------------------------


def test_csv_without_header_first_column_labels(tmp_path):
    result = read_sequences(write(tmp_path, "a.csv", "1,0.5,1.5,2.5\n0,3,4,5\n"))
    assert_sequences(result, [[[0.5], [1.5], [2.5]], [[3], [4], [5]]], [3, 3], np.array([1, 0], dtype=np.int64))


def test_csv_with_header_label_by_name_and_unequal_lengths(tmp_path):
    text = "t0,t1,t2,class\n1,2,3,up\n4,,,down\n5,6,,up\n\n"
    result = read_sequences(write(tmp_path, "a.csv", text), label_column="class")
    expected = [[[1], [2], [3]], [[4], [0], [0]], [[5], [6], [0]]]
    assert_sequences(result, expected, [3, 1, 2], np.array(["up", "down", "up"]))


def test_csv_label_by_index_and_short_rows(tmp_path):
    result = read_sequences(write(tmp_path, "a.csv", "9,a,8\n7,b\n"), label_column=1)
    assert_sequences(result, [[[9], [8]], [[7], [0]]], [2, 1], np.array(["a", "b"]))


def test_csv_label_by_negative_index_counts_from_the_end_of_each_row(tmp_path):
    result = read_sequences(write(tmp_path, "a.csv", "1,2,3,10\n4,20\n"), label_column=-1)
    assert_sequences(result, [[[1], [2], [3]], [[4], [0], [0]]], [3, 1], np.array([10, 20], dtype=np.int64))


def test_csv_header_detected_with_default_label_column(tmp_path):
    text = "label,a,b\n2,1.0,-1.0\n3,4,5\n"
    result = read_sequences(write(tmp_path, "a.csv", text))
    assert_sequences(result, [[[1], [-1]], [[4], [5]]], [2, 2], np.array([2, 3], dtype=np.int64))


def test_csv_quoted_cells_and_bom(tmp_path):
    (tmp_path / "a.csv").write_bytes('\ufefflabel,v1,v2\n"walk, fast",1,2\n'.encode("utf-8"))
    result = read_sequences(tmp_path / "a.csv")
    assert_sequences(result, [[[1], [2]]], [2], np.array(["walk, fast"]))


def csv_error(tmp_path, text, match, label_column=None):
    with pytest.raises(DataError, match=match):
        read_sequences(write(tmp_path, "bad.csv", text), label_column=label_column)


# Bad .csv files, the label column given, and the error each must get.
CSV_ERRORS = [
    pytest.param("t0,t1,y\n1,2,a\n", r"no column named 'label' in the header \(line 1: 't0', 't1', 'y'\)", "label",
                 id="unknown-label-name-lists-the-header"),
    pytest.param("a,1,2\n", r"label column 3 is out of range: line 1 has 3 columns", 3, id="label-index-out-of-range"),
    pytest.param("a,1,2,3\nb,1,,3\n", r"bad\.csv, line 2, column 2: empty cell followed by a value", None,
                 id="empty-cell-followed-by-a-value"),
    pytest.param("label,v0,v1\na,1,2\nb,1,two\n", r"line 3, column 2: 'two' is not a number", None,
                 id="non-numeric-value"),
    pytest.param("a,1,2\n,3,4\n", r"line 2: labels missing: column 0 is empty", None, id="label-missing"),
    pytest.param("a,1,2\nb,,\n", r"line 2: the row has a label but no values", None,
                 id="row-with-a-label-and-no-values"),
    pytest.param("label,t0,t1\n", r"only a header row; the file holds no sequences", None, id="only-a-header"),
    pytest.param("\n\n , \n", r"no rows with values; the file holds no sequences", None, id="only-blank-lines"),
]


@pytest.mark.parametrize("text, match, label_column", CSV_ERRORS)
def test_csv_error(tmp_path, text, match, label_column):
    csv_error(tmp_path, text, match, label_column)


@pytest.mark.parametrize("cell", ["nan", "inf", "-Infinity", "1e39"])
def test_csv_non_finite_value(tmp_path, cell):
    csv_error(tmp_path, f"a,1,2\nb,3,{cell}\n", rf"line 2, column 2: '{cell}' is NaN or infinite")
