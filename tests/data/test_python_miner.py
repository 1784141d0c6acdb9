import ast
import textwrap

import pytest

from codistill.data.python_miner import (
    FocalLinker,
    MiningCounts,
    merge_counts,
    mine_python_file,
    mine_python_tree,
    record_id,
)
from codistill.data.schema import PLACEHOLDER

UNITTEST_SRC = textwrap.dedent(
    """\
    import unittest
    import shapes


    class TestArea(unittest.TestCase):
        def check_positive(self, x):
            self.assertTrue(x > 0)

        def test_area(self):
            sq = shapes.Square(2)
            self.assertEqual(sq.area(), 4)
            self.assertTrue(sq.area() > 0)
            self.check_positive(sq.area())

        def test_multiline(self):
            self.assertEqual(
                shapes.perimeter(2),  # four sides
                8,
            )

        def test_raises(self):
            with self.assertRaises(ValueError) as cm:
                shapes.Square(-1)
            self.assertIn("negative", str(cm.exception))

        def test_nested(self):
            for n in range(3):
                if n:
                    self.assertGreater(n, 0)

            def inner():
                self.assertTrue(False)
    """
)

PYTEST_SRC = textwrap.dedent(
    """\
    import pytest
    from shapes import area


    def test_area_of_two():
        assert area(2) == 4


    def test_negative():
        with pytest.raises(ValueError):
            area(-1)


    def helper():
        assert True
    """
)

SHAPES_SRC = textwrap.dedent(
    """\
    def area(x):
        return x * x


    def perimeter(x):
        return 4 * x


    class Square:
        def __init__(self, side):
            self.side = side

        @property
        def area(self):
            return self.side ** 2
    """
)


def _by_test(records):
    out = {}
    for r in records:
        out.setdefault(r.test_name, []).append(r)
    return out


def _mine(source, path="tests/test_shapes.py", **kwargs):
    return mine_python_file(source, path, "demo", **kwargs)


def test_each_assertion_of_a_test_becomes_one_record():
    records = _by_test(_mine(UNITTEST_SRC))["TestArea.test_area"]
    assert [r.target for r in records] == [
        "self.assertEqual(sq.area(), 4)",
        "self.assertTrue(sq.area() > 0)",
    ]
    assert [r.assert_line for r in records] == [11, 12]


def test_test_code_is_dedented_and_masks_only_the_target():
    first = _by_test(_mine(UNITTEST_SRC))["TestArea.test_area"][0]
    assert first.test_code == (
        "def test_area(self):\n"
        "    sq = shapes.Square(2)\n"
        f"    {PLACEHOLDER}\n"
        "    self.assertTrue(sq.area() > 0)\n"
        "    self.check_positive(sq.area())"
    )


def test_helper_method_assertions_are_not_mined():
    records = _mine(UNITTEST_SRC)
    # Every test method yields records and the helper none (an empty result would not do).
    assert sorted({r.test_name for r in records}) == [
        "TestArea.test_area",
        "TestArea.test_multiline",
        "TestArea.test_nested",
        "TestArea.test_raises",
    ]
    targets = {r.target for r in records}
    assert "self.assertTrue(x > 0)" not in targets
    assert "self.check_positive(sq.area())" not in targets  # a call to it is no assertion either


def test_multiline_assertion_becomes_one_line_target_without_comments():
    (record,) = _by_test(_mine(UNITTEST_SRC))["TestArea.test_multiline"]
    assert record.target == "self.assertEqual(shapes.perimeter(2), 8,)"
    assert record.test_code == f"def test_multiline(self):\n    {PLACEHOLDER}"


def test_with_assert_raises_targets_the_header_and_keeps_the_body():
    records = _by_test(_mine(UNITTEST_SRC))["TestArea.test_raises"]
    assert records[0].target == "with self.assertRaises(ValueError) as cm:"
    assert records[0].test_code.splitlines()[1:3] == [
        f"    {PLACEHOLDER}",
        "        shapes.Square(-1)",
    ]
    assert records[1].target == 'self.assertIn("negative", str(cm.exception))'


def test_assertions_in_nested_blocks_are_found_but_not_in_nested_functions():
    records = _by_test(_mine(UNITTEST_SRC))["TestArea.test_nested"]
    assert [r.target for r in records] == ["self.assertGreater(n, 0)"]
    assert f"            {PLACEHOLDER}" in records[0].test_code


def test_pytest_plain_assert_and_pytest_raises_are_mined():
    by_test = _by_test(_mine(PYTEST_SRC))
    assert [r.target for r in by_test["test_area_of_two"]] == ["assert area(2) == 4"]
    assert [r.target for r in by_test["test_negative"]] == ["with pytest.raises(ValueError):"]
    assert "helper" not in by_test


def test_with_body_on_the_header_line_is_targeted_whole():
    source = "def test_x():\n    with pytest.raises(KeyError): {}[1]\n"
    (record,) = _mine(source)
    assert record.target == "with pytest.raises(KeyError): {}[1]"


def test_multiline_with_header_ends_at_its_colon():
    source = (
        "class T:\n"
        "    def test_x(self):\n"
        "        with self.assertRaisesRegex(\n"
        "            ValueError, 'a:b'\n"
        "        ):  # trailing: note\n"
        "            f()\n"
    )
    (record,) = _mine(source)
    assert record.target == "with self.assertRaisesRegex(ValueError, 'a:b'):"
    assert record.test_code.splitlines()[1:] == [f"    {PLACEHOLDER}", "        f()"]


def test_async_test_methods_and_decorators_are_kept():
    source = (
        "class T:\n"
        "    @unittest.skipIf(False, 'never')\n"
        "    async def test_x(self):\n"
        "        self.assertTrue(await f())\n"
    )
    (record,) = _mine(source)
    assert record.test_code.startswith("@unittest.skipIf(False, 'never')\nasync def test_x(self):")


def test_line_numbers_survive_form_feeds_and_crlf():
    source = "import x\r\n\x0c\r\ndef test_a():\r\n    assert x.a()\r\n"
    (record,) = _mine(source)
    assert record.assert_line == 4


def test_unparsable_source_raises_syntax_error():
    with pytest.raises(SyntaxError):
        _mine("def test_x(:\n    assert 1\n")


def _tree(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_tree_counts_unparsable_file_as_skipped(tmp_path):
    root = _tree(
        tmp_path / "tests",
        {"test_ok.py": PYTEST_SRC, "test_broken.py": "def test_x(:\n", "notes.txt": "x"},
    )
    result = mine_python_tree(root, "demo")
    assert result.counts.files_seen == 2
    assert result.counts.files_parsed == 1
    assert result.counts.files_skipped_syntax == 1
    assert result.skipped_files[0][0] == "test_broken.py"
    assert len(result.records) == 2


def test_skipped_assertions_are_counted_by_reason(tmp_path):
    long_arg = "x" * 400
    source = (
        "def test_x(self):\n"
        f"    assert f('{long_arg}')\n"
        '    assert f("""a\n    b""")\n'
        "    y = 1; assert y\n"
        "    assert y == 1\n"
    )
    result = mine_python_tree(_tree(tmp_path, {"test_s.py": source}), "demo")
    counts = result.counts
    assert (counts.skipped_too_long, counts.skipped_multiline_string) == (1, 1)
    assert counts.skipped_unmaskable == 1
    assert counts.assertions_found == 4 and counts.records == 1
    assert result.records[0].target == "assert y == 1"


def test_max_target_chars_is_configurable():
    source = "def test_x():\n    assert f(1, 2, 3)\n"
    assert _mine(source, max_target_chars=10) == []
    assert len(_mine(source, max_target_chars=20)) == 1


def test_record_ids_are_stable_and_distinct():
    first, second = _mine(UNITTEST_SRC), _mine(UNITTEST_SRC)
    assert [r.id for r in first] == [r.id for r in second]
    assert len({r.id for r in first}) == len(first)
    r = first[0]
    assert r.id == record_id("demo", r.test_path, r.test_name, r.assert_line)


def test_focal_linked_by_test_name_prefers_module_function(tmp_path):
    src = _tree(tmp_path / "src", {"shapes.py": SHAPES_SRC})
    record = _mine(PYTEST_SRC, source_roots=[src])[0]
    assert (record.focal_link, record.focal_name, record.focal_path) == (
        "name",
        "area",
        "shapes.py",
    )
    assert record.focal_code == "def area(x):\n    return x * x"


def test_focal_linked_by_name_prefers_class_named_by_test_class(tmp_path):
    src = _tree(tmp_path / "src", {"shapes.py": SHAPES_SRC})
    source = "class TestSquare:\n    def test_area(self):\n        assert Square(2).area == 4\n"
    (record,) = _mine(source, source_roots=[src])
    assert record.focal_name == "Square.area"
    assert record.focal_code.startswith("@property\ndef area(self):")


def test_focal_falls_back_to_last_call_then_none(tmp_path):
    src = _tree(tmp_path / "src", {"shapes.py": SHAPES_SRC})
    by_test = _by_test(_mine(UNITTEST_SRC, source_roots=[src]))
    (multiline,) = by_test["TestArea.test_multiline"]
    assert (multiline.focal_link, multiline.focal_name) == ("last_call", "perimeter")
    (nested,) = by_test["TestArea.test_nested"]
    assert (nested.focal_link, nested.focal_name, nested.focal_code) == ("none", "", "")


def test_camel_case_test_names_link_by_name(tmp_path):
    src = _tree(tmp_path / "src", {"shapes.py": SHAPES_SRC})
    source = "class T:\n    def testPerimeterOfSquare(self):\n        assert g() == 8\n"
    (record,) = _mine(source, source_roots=[src])
    assert (record.focal_link, record.focal_name) == ("name", "perimeter")


def test_test_package_maps_to_source_package():
    linker = FocalLinker()
    assert linker.module_candidates("test/test_asyncio/test_tasks.py") == [
        "asyncio/tasks.py",
        "asyncio/tasks/__init__.py",
        "asyncio/__init__.py",
    ]
    assert linker.module_candidates("tests/shapes_test.py") == ["shapes.py", "shapes/__init__.py"]
    assert linker.module_candidates("test/test_json/__init__.py") == [
        "json.py",
        "json/__init__.py",
    ]
    assert linker.module_candidates("tests/conftest.py") == []


def test_every_masked_test_parses_again_with_its_target():
    mined = [(UNITTEST_SRC, r) for r in _mine(UNITTEST_SRC)]
    mined += [(PYTEST_SRC, r) for r in _mine(PYTEST_SRC)]
    # 6 unittest assertions (2 + 1 + 2 + 1) and 2 pytest ones: none may go missing.
    assert len(mined) == 8
    for source, record in mined:
        assert record.test_code.count(PLACEHOLDER) == 1
        restored = record.test_code.replace(PLACEHOLDER, record.target).splitlines()
        ast.parse("\n".join(restored))
        # The target is put back on the line its assertion starts on.
        name = record.test_name.split(".")[-1]
        def_line = next(
            i for i, line in enumerate(source.splitlines(), 1) if f"def {name}(" in line
        )
        assert restored[record.assert_line - def_line].strip() == record.target


# -- focal methods found through the test module's imports (issue 13 §3) -------------------------

CART_SRC = textwrap.dedent(
    """\
    class Cart:
        def __init__(self):
            self.items = {}

        def add(self, name, qty=1):
            self.items[name] = self.items.get(name, 0) + qty

        def total(self):
            return sum(self.items.values())

        def count(self, name):
            return self.items.get(name, 0)
    """
)

CART_TESTS = textwrap.dedent(
    """\
    from shop.cart import Cart


    def test_new_cart_is_empty():
        c = Cart()
        assert c.total() == 0


    def test_adding_items():
        cart = Cart()
        cart.add("apple", 3)
        assert cart.total() == 3
        assert cart.count("apple") == 1
    """
)


def test_standard_layout_links_calls_on_instances_of_imported_classes(tmp_path):
    # shop/cart.py + tests/test_cart.py, mined the way `codistill data mine DIR` does it (the
    # tree itself is the source root): the test file's name alone finds no `cart.py`.
    root = _tree(
        tmp_path / "proj",
        {"shop/__init__.py": "", "shop/cart.py": CART_SRC, "tests/test_cart.py": CART_TESTS},
    )
    result = mine_python_tree(root, "demo", source_roots=[root])
    got = [(r.target, r.focal_link, r.focal_name, r.focal_path) for r in result.records]
    assert got == [
        ("assert c.total() == 0", "last_call", "Cart.total", "shop/cart.py"),
        ("assert cart.total() == 3", "last_call", "Cart.total", "shop/cart.py"),
        ('assert cart.count("apple") == 1', "last_call", "Cart.count", "shop/cart.py"),
    ]
    assert result.records[0].focal_code.startswith("def total(self):\n")
    assert result.counts.focal_link_kinds == {"import_instance": 3}
    assert result.counts.to_dict()["focal_link_kinds"] == {"import_instance": 3}


def _links(root, **kwargs):
    result = mine_python_tree(root, "demo", source_roots=[root], **kwargs)
    return [(r.target, r.focal_link, r.focal_name, r.focal_path) for r in result.records], result


def test_src_layout_module_imports_and_imported_functions_are_resolved(tmp_path):
    shop = CART_SRC + "\n\ndef total_of(*carts):\n    return sum(c.total() for c in carts)\n"
    tests = textwrap.dedent(
        """\
        import shop.cart
        import shop.cart as sc
        from shop import cart
        from shop.cart import total_of


        def test_dotted_module():
            assert shop.cart.Cart().total() == 0


        def test_aliased_module():
            assert sc.total_of() == 0


        def test_submodule_imported_from_package():
            assert cart.Cart.count(None, "x") == 0


        def test_function():
            assert total_of(sc.Cart()) == 0
        """
    )
    root = _tree(
        tmp_path / "proj",
        {"src/shop/__init__.py": "", "src/shop/cart.py": shop, "tests/test_cart.py": tests},
    )
    got, result = _links(root)
    assert got == [
        ("assert shop.cart.Cart().total() == 0", "last_call", "Cart.total", "src/shop/cart.py"),
        ("assert sc.total_of() == 0", "last_call", "total_of", "src/shop/cart.py"),
        ('assert cart.Cart.count(None, "x") == 0', "last_call", "Cart.count", "src/shop/cart.py"),
        ("assert total_of(sc.Cart()) == 0", "last_call", "total_of", "src/shop/cart.py"),
    ]
    assert result.counts.focal_link_kinds == {"import_instance": 1, "import_call": 3}


def test_reexports_star_imports_relative_imports_and_inherited_methods(tmp_path):
    base = "class Base:\n    def describe(self):\n        return 'base'\n"
    cart = "from .base import Base\n\n\n" + CART_SRC.replace("class Cart:", "class Cart(Base):")
    tests = textwrap.dedent(
        """\
        from .. import Cart
        from ..base import *


        def test_inherited():
            assert Cart().describe() == 'base'


        def test_star():
            assert Base().describe() == 'base'
        """
    )
    root = _tree(
        tmp_path / "proj",
        {
            "shop/__init__.py": "from .cart import *\n",
            "shop/base.py": base,
            "shop/cart.py": cart,
            "shop/tests/__init__.py": "",
            "shop/tests/test_cart.py": tests,
        },
    )
    got, _ = _links(root)
    assert got == [
        ("assert Cart().describe() == 'base'", "last_call", "Base.describe", "shop/base.py"),
        ("assert Base().describe() == 'base'", "last_call", "Base.describe", "shop/base.py"),
    ]


def test_instances_from_setup_fixtures_with_and_annotations_and_property_reads(tmp_path):
    cart = CART_SRC + textwrap.indent(
        "\n@property\ndef size(self):\n    return len(self.items)\n\n"
        "def __enter__(self):\n    return self\n\n"
        "def __exit__(self, *exc):\n    return False\n",
        "    ",
    )
    tests = textwrap.dedent(
        """\
        import unittest

        import pytest

        from shop.cart import Cart


        @pytest.fixture
        def full_cart():
            c = Cart()
            c.add("apple")
            return c


        def test_fixture(full_cart):
            assert full_cart.count("apple") == 1


        def test_with():
            with Cart() as c:
                assert c.size == 0


        def test_annotation():
            c: Cart = make()
            assert c.total() == 0


        class TestCartCase(unittest.TestCase):
            def setUp(self):
                self.cart = Cart()

            def test_from_set_up(self):
                self.assertEqual(self.cart.size, 0)
        """
    )
    root = _tree(tmp_path / "proj", {"shop/cart.py": cart, "tests/test_cart.py": tests})
    got, _ = _links(root)
    assert [(focal, link) for _, link, focal, _ in got] == [
        ("Cart.count", "last_call"),
        ("Cart.size", "last_call"),
        ("Cart.total", "last_call"),
        ("Cart.size", "last_call"),
    ]


def test_a_called_definition_named_like_the_test_links_every_assertion_by_name(tmp_path):
    tests = textwrap.dedent(
        """\
        from shop.cart import Cart


        def test_add():
            c = Cart()
            c.add("apple", 2)
            assert c.total() == 2
            assert c.count("apple") == 2
        """
    )
    root = _tree(tmp_path / "proj", {"shop/cart.py": CART_SRC, "tests/test_cart.py": tests})
    got, result = _links(root)
    assert {(link, focal) for _, link, focal, _ in got} == {("name", "Cart.add")}
    assert result.counts.focal_link_kinds == {"import_name": 2}


def test_calls_outside_the_subject_link_only_from_inside_the_assertion_when_it_exists(tmp_path):
    util = "def fmt(x):\n    return str(x)\n\n\ndef make_cart():\n    return None\n"
    tests = textwrap.dedent(
        """\
        from shop.cart import Cart
        from shop.util import fmt, make_cart


        def test_subject_call_before_wins_over_other_module_inside():
            c = Cart()
            n = c.total()
            assert fmt(n) == "0"


        def test_other_module_inside_the_assertion():
            assert fmt(1) == "1"


        def test_other_module_before_the_assertion_is_no_evidence():
            c = make_cart()
            assert c is None
        """
    )
    # Without a subject module (no `misc` module), the imported code is the only evidence.
    misc = "from shop.util import make_cart\n\n\ndef test_x():\n    c = make_cart()\n    assert c\n"
    root = _tree(
        tmp_path / "proj",
        {
            "shop/cart.py": CART_SRC,
            "shop/util.py": util,
            "tests/test_cart.py": tests,
            "tests/test_misc.py": misc,
        },
    )
    got, result = _links(root)
    assert [(link, focal) for _, link, focal, _ in got] == [
        ("last_call", "Cart.total"),
        ("last_call", "fmt"),
        ("none", ""),
        ("last_call", "make_cart"),
    ]
    assert result.counts.focal_link_kinds == {"import_call": 2, "import_instance": 1, "none": 1}


def test_test_helpers_are_never_focal_and_unresolved_imports_fall_back_to_file_rules(tmp_path):
    tests = textwrap.dedent(
        """\
        from tests.helpers import check
        from elsewhere import area


        def test_helper_only():
            assert check(1)


        def test_by_file_name_rules():
            assert area(2) == 4
        """
    )
    root = _tree(
        tmp_path / "proj",
        {
            "shapes.py": SHAPES_SRC,
            "tests/__init__.py": "",
            "tests/helpers.py": "def check(x):\n    return x\n",
            "tests/test_shapes.py": tests,
        },
    )
    # The test file's name finds shapes.py only when the tests are mined on their own.
    result = mine_python_tree(root / "tests", "demo", source_roots=[root])
    links = [(r.focal_link, r.focal_name, r.focal_path) for r in result.records]
    assert links == [("none", "", ""), ("last_call", "area", "shapes.py")]
    assert result.counts.focal_link_kinds == {"none": 1, "file_last_call": 1}


def test_link_kinds_are_reported_only_by_miners_that_count_them():
    assert "focal_link_kinds" not in MiningCounts().to_dict()
    counts = MiningCounts()
    counts.focal_link_kinds["import_call"] += 2
    total = MiningCounts()
    merge_counts(total, counts)
    merge_counts(total, counts)
    assert total.to_dict()["focal_link_kinds"] == {"import_call": 4}
