# run_fuzz.cmake -- one bounded libFuzzer run from a scratch copy of the
# seed corpus (so the committed seeds never change), with a fixed seed.
file(REMOVE_RECURSE "${WORK}")
file(COPY "${SEEDS}/" DESTINATION "${WORK}")
execute_process(COMMAND "${FUZZER}" -seed=1 -max_total_time=${SECONDS} -max_len=65536
                        -print_final_stats=1 "${WORK}"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${FUZZER} failed (exit ${rc})")
endif()
