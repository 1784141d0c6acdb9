"""Small MBPP-style questions with verified solutions, for the fault tests (faults, verify)."""

from __future__ import annotations

from codistill.data.benchmarks import mbpp_prompt
from codistill.data.schema import CodegenRecord


def question(task: str, description: str, entry: str, tests: list[str]) -> CodegenRecord:
    """An MBPP-style record: the prompt is the description and the first test."""
    return CodegenRecord(
        id=f"Mbpp/{task}",
        source="mbpp",
        prompt=mbpp_prompt(description, tests[0]),
        entry_point=entry,
        tests="\n".join(tests) + "\n",
    )


SUM_TO = question(
    "t1",
    "Write a function that returns the sum of the integers from 0 to n.",
    "sum_to",
    ["assert sum_to(3) == 6", "assert sum_to(0) == 0", "assert sum_to(10) == 55"],
)
SUM_TO_SOLUTION = """\
def sum_to(n):
    total = 0
    for i in range(n + 1):
        total += i
    return total
"""

COUNT_BETWEEN = question(
    "t2",
    "Write a function that counts the numbers of a list that are positive and below a limit.",
    "count_between",
    [
        "assert count_between([1, 5, -2, 3, 0], 4) == 2",
        "assert count_between([], 3) == 0",
        "assert count_between([2, 2, 7], 3) == 2",
        "assert count_between([3, 1], 3) == 1",
    ],
)
COUNT_BETWEEN_SOLUTION = """\
def count_between(nums, limit):
    count = 0
    for x in nums:
        if x < limit and x > 0:
            count = count + 1
    return count
"""

DIGIT_SUM = question(
    "t3",
    "Write a function that returns the sum of the decimal digits of a non-negative integer.",
    "digit_sum",
    ["assert digit_sum(123) == 6", "assert digit_sum(0) == 0", "assert digit_sum(905) == 14"],
)
DIGIT_SUM_SOLUTION = """\
def digit_sum(n):
    s = 0
    while n > 0:
        s += n % 10
        n //= 10
    return s
"""

MAX_GAP = question(
    "t4",
    "Write a function that returns the largest rise between consecutive values of a list.",
    "max_gap",
    [
        "assert max_gap([1, 4, 2, 8]) == 6",
        "assert max_gap([5, 3]) == 0",
        "assert max_gap([0, 1, 3, 6]) == 3",
    ],
)
MAX_GAP_SOLUTION = '''\
def max_gap(values):
    """The largest values[i] - values[i - 1]."""
    best = 0
    for i in range(1, len(values)):
        gap = values[i] - values[i - 1]
        if gap > best:
            best = gap
    return best
'''

PALINDROME = question(
    "t5",
    "Write a function that tells whether a string reads the same backwards.",
    "is_palindrome",
    [
        "assert is_palindrome('abba') == True",
        "assert is_palindrome('abc') == False",
        "assert is_palindrome('racecar') == True",
        "assert is_palindrome('ab') == False",
    ],
)
PALINDROME_SOLUTION = """\
def is_palindrome(text):
    left = 0
    right = len(text) - 1
    while left < right:
        if text[left] != text[right]:
            return False
        left += 1
        right -= 1
    return True
"""

DESCRIBE = question(
    "t6",
    "Write a function that reports the sums of neighbouring pairs of a list and their maximum.",
    "describe",
    [
        "assert describe([1, 2, 3]) == 'max=5 sums=3,5'",
        "assert describe([4]) == 'empty'",
        "assert describe([5, -1, 2]) == 'max=4 sums=4,1'",
    ],
)
DESCRIBE_SOLUTION = """\
def describe(values):
    sums = [sum(values[i:i + 2]) for i in range(len(values) - 1)]
    if not sums:
        return "empty"
    return "max=" + str(max(sums)) + " sums=" + ",".join(map(str, sums))
"""

QUESTIONS = [
    (SUM_TO, SUM_TO_SOLUTION),
    (COUNT_BETWEEN, COUNT_BETWEEN_SOLUTION),
    (DIGIT_SUM, DIGIT_SUM_SOLUTION),
    (MAX_GAP, MAX_GAP_SOLUTION),
    (PALINDROME, PALINDROME_SOLUTION),
    (DESCRIBE, DESCRIBE_SOLUTION),
]
