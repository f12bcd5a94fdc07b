require "vacation";
vacation :days 2 text:
line one
line two
