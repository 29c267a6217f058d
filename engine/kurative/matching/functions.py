"""The JMESPath function table the engine evaluates with: the library's, with numbers kept finite.

Alert data is text, and ``to_number`` turns it into numbers: the library reads ``"1.0e400"``, ``"inf"``
and ``"nan"`` as floats that are not JSON numbers, after which ``ceil`` and ``floor`` raise
OverflowError or ValueError, and sums or rendered params hold ``Infinity``, which no journal or JSON
reader accepts. Here ``to_number`` gives null for a string that is no finite number (what the JMESPath
specification says of any string that is not a number), and any function whose result is not a finite
number, or that overflows, raises :class:`ExpressionError` — a failed condition, a render error — the
same from the compiled closures as from the interpreter. Everything else is the library's own code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from jmespath import functions as jp_functions
from jmespath.exceptions import JMESPathError
from jmespath.visitor import Options, TreeInterpreter

from kurative.errors import ExpressionError

# Integers stay exact, but one past Python's limit for int-to-text conversion (4,300 digits) could not be
# rendered or journaled; 4,000 digits leave room for a sum of a few.
_MAX_INTEGER = 10**4000


def _finite(value: Any) -> bool:
    """A number JSON can hold and Python can write (anything else is not a number, and passes)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return -_MAX_INTEGER < value < _MAX_INTEGER
    return True


class Functions(jp_functions.Functions):
    """The library's functions; ``to_number`` never makes a non-finite number, nothing overflows."""

    def call_function(self, function_name: str, resolved_args: Iterable[Any]) -> Any:
        try:
            result = super().call_function(function_name, resolved_args)
        except JMESPathError:
            raise  # a wrong argument type: the library's own error, as the interpreter raises it
        except (OverflowError, ValueError) as exc:  # ceil(inf), avg() of a huge integer
            raise ExpressionError(f"{function_name}(): number out of range ({exc})") from None
        if not _finite(result):
            problem = f"is {result}" if isinstance(result, float) else "has more than 4,000 digits"
            raise ExpressionError(
                f"{function_name}(): the result {problem}: out of the range of JSON numbers"
            )
        return result

    @jp_functions.signature({"types": []})
    def _func_to_number(self, arg: Any) -> Any:
        number = getattr(super(), "_func_to_number")(arg)  # noqa: B009  (not in the type stubs)
        return number if _finite(number) else None


FUNCTIONS = Functions()
# For what the compiler hands to the library (expression references) and for Expression.search.
INTERPRETER = TreeInterpreter(Options(custom_functions=FUNCTIONS))
