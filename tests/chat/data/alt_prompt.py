# A second prompt file for the +prompt test (Corvid's own words, ChatRWKV format).
interface = ":"
user = "User"
bot = "Bot"

init_prompt = f'''
{user}{interface} hi

{bot}{interface} Hello! Ask me anything and I will answer as well as I can.
'''
