import gzip
import struct

import numpy as np
import pytest

from mvae.data.formats import prepare_images, read_hoda_cdb, read_idx, write_hoda_cdb, write_idx
from mvae.errors import DataError


def cdb_header(total, counts, width=0, height=0, image_type=0):
    """A Hoda header built field by field from the published layout, independent of the module's Struct."""
    label_counts = np.zeros(128, dtype="<u4")
    label_counts[: len(counts)] = counts
    header = struct.pack("<HBBBBI", 2005, 8, 4, width, height, total) + label_counts.tobytes() + bytes([image_type])
    header += b"C" * 256 + b"\0" * 245
    assert len(header) == 1024
    return header


# A 3x4 digit of label 7 and a 2x2 digit of label 1, as variable-size records.
SMALL_A = np.array([[0, 1, 1, 0], [1, 0, 0, 1], [1, 1, 1, 1]], dtype=np.uint8)
SMALL_B = np.array([[1, 1], [0, 1]], dtype=np.uint8)
RUNS_A = bytes([1, 2, 1, 0, 1, 2, 1, 0, 4])
RUNS_B = bytes([0, 2, 1, 1])


def variable_record(label, image_hw, runs, byte_count=None):
    height, width = image_hw
    count = len(runs) if byte_count is None else byte_count
    return bytes([0xFF, label, width, height]) + struct.pack("<H", count) + runs


def small_file():
    records = [variable_record(7, (3, 4), RUNS_A), variable_record(1, (2, 2), RUNS_B)]
    return cdb_header(2, counts=[0, 1, 0, 0, 0, 0, 0, 1]) + b"".join(records)


def test_cdb_reader_decodes_hand_built_variable_size_records():
    images, labels = read_hoda_cdb(small_file())
    assert labels.tolist() == [7, 1] and labels.dtype == np.uint8
    assert [im.shape for im in images] == [(3, 4), (2, 2)]
    np.testing.assert_array_equal(images[0], SMALL_A)
    np.testing.assert_array_equal(images[1], SMALL_B)
    assert images[0].dtype == np.uint8


def test_cdb_reader_decodes_fixed_size_records():
    # Width and height in the header: records carry no size of their own.
    def rec(label, runs):
        return bytes([0xFF, label]) + struct.pack("<H", len(runs)) + runs

    header = cdb_header(2, counts=[1, 0, 0, 1], width=3, height=2)
    data = header + rec(3, bytes([3, 0, 3])) + rec(0, bytes([1, 1, 1, 2, 1]))
    images, labels = read_hoda_cdb(data)
    assert labels.tolist() == [3, 0]
    np.testing.assert_array_equal(images[0], [[0, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(images[1], [[0, 1, 0], [0, 0, 1]])


def test_cdb_reader_accepts_a_byte_count_that_includes_the_record_header():
    data = cdb_header(1, counts=[0, 1]) + variable_record(1, (2, 2), RUNS_B, byte_count=len(RUNS_B) + 6)
    images, _ = read_hoda_cdb(data)
    np.testing.assert_array_equal(images[0], SMALL_B)


def test_cdb_round_trip_keeps_every_pixel():
    rng = np.random.default_rng(0)
    shapes = [(1, 1), (1, 7), (9, 1), (27, 20), (20, 21), (10, 15), (64, 40), (5, 5)]
    images = [(rng.random(s) < 0.4).astype(np.uint8) for s in shapes]
    images[-1][:] = 1  # every row starts with ink: a zero-length background run
    images[-2][:, 0] = 0
    images[-2][:, -1] = 1
    labels = [6, 5, 0, 2, 9, 9, 3, 4]
    data = write_hoda_cdb(images, labels)
    decoded, decoded_labels = read_hoda_cdb(data, "fixture.cdb")
    assert decoded_labels.tolist() == labels
    assert len(decoded) == len(images)
    for got, want in zip(decoded, images):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    # The header's per-label counts follow the records.
    assert struct.unpack_from("<10I", data, 10) == (1, 0, 1, 1, 1, 1, 1, 0, 0, 2)
    assert struct.unpack_from("<BBI", data, 4) == (0, 0, 8)


def _replace(data, offset, new):
    return data[:offset] + new + data[offset + len(new) :]


FIRST = 1024  # offset of the first record


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d[:500], "too short"),
        (lambda d: d[: FIRST + 15 + 6 + 2], "cut off inside its pixels"),
        (lambda d: d[: FIRST + 15 + 3], "record 1 of 2 .* is cut off"),
        (lambda d: _replace(d, FIRST, b"\x00"), "not 0xff"),
        (lambda d: _replace(d, FIRST + 6, b"\x05"), "row of 5 pixels in a 4 px wide image"),
        (lambda d: _replace(d, FIRST + 4, struct.pack("<H", 3)), "declares 3 bytes of pixels but holds 9"),
        (lambda d: _replace(d, FIRST + 3, b"\x00"), "empty 4x0 image"),
        (lambda d: d + b"\xff", "1 bytes after its last record"),
        (lambda d: _replace(d, 10 + 4 * 7, struct.pack("<I", 2)), "counts 2 records of label 7 but the file holds 1"),
        (lambda d: _replace(d, 6, struct.pack("<I", 1000)), "truncated"),
        (lambda d: _replace(d, 6 + 4 + 512, b"\x01"), "grey-level"),
    ],
)
def test_cdb_reader_rejects_damaged_files(damage, message):
    with pytest.raises(DataError, match=message) as info:
        read_hoda_cdb(damage(small_file()), "Test 20000.cdb")
    assert "Test 20000.cdb" in str(info.value)


def test_read_idx_decodes_hand_built_bytes():
    data = b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + bytes([1, 2, 3, 4, 5, 255])
    array = read_idx(data)
    assert array.dtype == np.uint8
    np.testing.assert_array_equal(array, [[1, 2, 3], [4, 5, 255]])
    ints = read_idx(b"\x00\x00\x0c\x01" + struct.pack(">I", 2) + struct.pack(">ii", -7, 70000))
    assert ints.tolist() == [-7, 70000] and ints.dtype == np.int32


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(compress):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7).astype(np.uint8)
    floats = rng.standard_normal((3, 2)).astype(np.float32)
    for array in (images, labels, floats):
        data = write_idx(array)
        data = gzip.compress(data) if compress else data
        decoded = read_idx(data)
        assert decoded.shape == array.shape and decoded.dtype == array.dtype
        np.testing.assert_array_equal(decoded, array)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "not an idx file"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown idx type code 0x07"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + bytes(5), "holds 17 bytes .* needs 18"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + bytes(7), "holds 19 bytes .* needs 18"),
        (b"\x00\x00\x08\x03\x00", "ends inside its header"),
        (b"\x00\x00", "too short"),
        (gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 1) + b"\x00")[:-6], "damaged gzip"),
    ],
)
def test_read_idx_rejects_bad_files(data, message):
    with pytest.raises(DataError, match=message):
        read_idx(data, "X.idx3-ubyte")


def _centre_of_mass(image):
    ys, xs = np.indices(image.shape)
    total = image.astype(np.float64).sum()
    return (ys * image).sum() / total, (xs * image).sum() / total


def test_prepare_images_fits_long_side_to_20_and_centres_the_mass():
    # An L: its centre of mass is far from its bounding box's centre, so the test tells the two apart.
    blob = np.zeros((10, 5), dtype=np.uint8)
    blob[:, 0] = 1
    blob[-1, :] = 1
    tall_thin = np.zeros((40, 30), dtype=np.uint8)
    tall_thin[5:35, 10:14] = 1
    out = prepare_images([blob, blob * 255, tall_thin])
    assert out.shape == (3, 28, 28) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], out[1])  # 0/1 and 0/255 ink mean the same
    for image, (height, width) in zip(out[[0, 2]], [(20, 10), (20, 3)]):
        rows, cols = np.nonzero(image)
        assert rows.max() - rows.min() + 1 == height
        assert abs((cols.max() - cols.min() + 1) - width) <= 1
        assert image.max() == 255
        cy, cx = _centre_of_mass(image)
        assert abs(cy - 14.0) <= 0.5 and abs(cx - 14.0) <= 0.5  # the MNIST convention, as in the prepared sets
    # The L's mass sits left of and below its box: the box is not centred.
    rows, cols = np.nonzero(out[0])
    assert (cols.min() + cols.max()) / 2 > 14 + 1
    assert (rows.min() + rows.max()) / 2 < 14 - 1


def test_prepare_images_rejects_an_empty_image():
    with pytest.raises(DataError, match="Image 1 has no ink"):
        prepare_images([np.ones((3, 3), np.uint8), np.zeros((3, 3), np.uint8)])
